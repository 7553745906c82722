"""Alpha blending with an opacity range (DRAEM, RealNet, MemSeg)."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.seeding import uniform
from anomalysynth.synth.blend import blend
from anomalysynth.synth.parts import Blend
from anomalysynth.synth.ranges import check_range

__all__ = ["AlphaBlend"]


class AlphaBlend(Blend):
    """``A = (1 - M) I + (1 - delta) M I + delta M P`` with ``delta ~ U[opacity]``.

    Args:
        opacity: range of the source's weight inside the mask. DRAEM keeps U[0, 0.8) of
            the original, i.e. opacity in (0.2, 1]; RealNet uses [0.2, 1] for DTD and
            [0.5, 1] for SDAS; MemSeg [0.15, 1].
        min_change: drop mask pixels whose value changed by less than this (largest
            absolute change over the channels) and keep the input there; a sample left
            with an empty mask gets label 0. ``0`` (DRAEM) keeps the whole mask.

    Params: ``opacity``. Strength share: the opacity.
    """

    def __init__(self, opacity: tuple[float, float] = (0.2, 1.0), min_change: float = 0.0) -> None:
        self.opacity = check_range("opacity", opacity, 0.0, 1.0)
        if not 0.0 <= float(min_change) <= 1.0:
            raise ValueError(f"`min_change` must lie in [0, 1]; got {min_change}.")
        self.min_change = float(min_change)

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"opacity": uniform(generators, *self.opacity)}

    def blend(self, images: Tensor, source: Tensor, mask: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        image = blend(images, source, mask, params["opacity"])
        self.drop_unchanged(images, image, mask)
        return image, mask

    def drop_unchanged(self, images: Tensor, image: Tensor, mask: Tensor) -> None:
        """With ``min_change``: clear the mask and restore the input where the change is smaller, in place."""
        if self.min_change <= 0.0:
            return
        unchanged = (image - images).abs().amax(dim=1, keepdim=True) < self.min_change
        mask.masked_fill_(unchanged, 0.0)
        torch.where(unchanged, images, image, out=image)

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        return params["opacity"].to(images.dtype)

"""The image's own negative ``1 - I``."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth import dispatch
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.parts import AnomalySource

__all__ = ["NegativeSource"]


class NegativeSource(AnomalySource):
    """``1 - I``, optionally augmented: on near-binary images (circuit boards, print) the
    anomaly turns foreground into background and back inside the mask.

    Args:
        augment: DRAEM's augmentation (3 of 10 operations) on the negative.

    Params: ``aug_*``.
    """

    def __init__(self, augment: bool = True) -> None:
        self.augment = bool(augment)
        self._augment = TextureAugment() if augment else None

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        return self._augment.sample(generators) if self._augment is not None else {}

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        negative = 1.0 - images
        return dispatch.augment_textures(self._augment, negative, params) if self._augment is not None else negative

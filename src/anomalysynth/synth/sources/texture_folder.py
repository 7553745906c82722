"""A folder of texture images (DTD in DRAEM), augmented by 3 of 10 operations."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.parts import AnomalySource
from anomalysynth.synth.sources.colour import check_colour, coloured_and_augmented, grey_textures
from anomalysynth.synth.textures import TextureFolder

__all__ = ["TextureFolderSource"]


class TextureFolderSource(AnomalySource):
    """One image drawn uniformly from ``root`` per sample, resized to the image.

    Args:
        root: folder of images (e.g. DTD's ``images/``), read recursively.
        augment: DRAEM's augmentation (3 of 10 operations).
        texture_colour: ``"rgb"``, ``"grey"`` or ``"auto"`` (grey for grey images
            stored as RGB), see :class:`~anomalysynth.synth.PerlinTextureBlend`.

    Params: ``texture_index``, ``texture_grey``, ``aug_*``.
    """

    def __init__(self, root: str | Path, augment: bool = True, texture_colour: str = "rgb") -> None:
        self.root = str(root)
        self.augment = bool(augment)
        self.texture_colour = check_colour(texture_colour)
        self.textures = TextureFolder(root)
        self._augment = TextureAugment() if augment else None

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        n = len(self.textures)
        out = {"texture_index": draw(generators, lambda g: torch.randint(0, n, (), generator=g))}
        if self._augment is not None:
            out.update(self._augment.sample(generators))
        out["texture_grey"] = grey_textures(self.texture_colour, images)
        return out

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        size = (images.shape[-2], images.shape[-1])
        textures = self.textures.load(params["texture_index"].cpu(), size).to(images.device, images.dtype)
        return coloured_and_augmented(textures, images, params, self._augment)

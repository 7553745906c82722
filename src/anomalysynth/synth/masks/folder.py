"""User masks: binary mask images from a folder, one drawn per sample."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.parts import MaskGenerator
from anomalysynth.synth.textures import TextureFolder

__all__ = ["MaskFolder"]


class MaskFolder(MaskGenerator):
    """Masks drawn uniformly from the images under ``root`` (recursively, sorted), resized
    to the image (bilinear) and thresholded at 0.5: pixels above are the mask.

    Args:
        root: folder of mask images (any format PIL reads; colour images are made grey).
        flip: also flip each drawn mask horizontally and/or vertically with p = 0.5.

    Params: ``mask_index``, ``mask_flip`` (B, 2) bool.
    """

    def __init__(self, root: str | Path, flip: bool = True) -> None:
        self.root = str(root)
        self.flip = bool(flip)
        self._masks = TextureFolder(root)

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        n = len(self._masks)
        out = {"mask_index": draw(generators, lambda g: torch.randint(0, n, (), generator=g))}
        flips = draw(generators, lambda g: torch.rand(2, generator=g) < 0.5)
        out["mask_flip"] = flips & self.flip
        return out

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        h, w = images.shape[-2:]
        grey = self._masks.load(params["mask_index"].cpu(), (h, w)).mean(dim=1, keepdim=True)
        masks = (grey > 0.5).to(images.dtype)
        flips = params["mask_flip"].cpu()
        for i in range(masks.shape[0]):
            dims = [d for d, f in ((-1, flips[i, 0]), (-2, flips[i, 1])) if bool(f)]
            if dims:
                masks[i] = masks[i].flip(dims)
        return masks.to(images.device)

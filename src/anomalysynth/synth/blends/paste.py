"""Pasting: the source replaces the image inside the mask (CutPaste)."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth.parts import Blend

__all__ = ["PasteBlend"]


class PasteBlend(Blend):
    """``A = (1 - M) I + M P``: no parameters, no share of the strength."""

    def blend(self, images: Tensor, source: Tensor, mask: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        # lerp with a 0/1 weight is exact at both ends
        return torch.lerp(images, source, mask.to(images.dtype).expand_as(images)), mask

"""Opacity blending of an anomaly source into an image through a mask."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["blend"]


def blend(image: Tensor, source: Tensor, mask: Tensor, opacity: Tensor) -> Tensor:
    """``A = (1 - M) I + (1 - delta) M I + delta M P`` (DRAEM, RealNet).

    Args:
        image: (B, C, H, W) the normal image I.
        source: (B, C, H, W) the anomaly source P (texture, SDAS image, ...).
        mask: (B, 1, H, W) the mask M in [0, 1].
        opacity: (B,) the source's weight delta inside the mask.

    Returns:
        (B, C, H, W); equal to ``image`` where ``mask`` is 0.
    """
    weight = mask * opacity.to(image.dtype).view(-1, 1, 1, 1)
    # one fused kernel and one allocation; exact at weights 0 and 1
    return torch.lerp(image, source, weight.expand_as(image))

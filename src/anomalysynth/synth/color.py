"""Colour operations on batches with per-sample parameters."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["shift_hue_saturation"]


def shift_hue_saturation(x: Tensor, hue: Tensor, saturation: Tensor | None = None) -> Tensor:
    """Rotate the hue by ``hue`` turns and add ``saturation`` in HSV space, value kept.

    Args:
        x: (B, C, H, W) in [0, 1]; grey images (C = 1) are returned unchanged.
        hue: (B,) hue shift as a fraction of a full turn.
        saturation: (B,) amount added to the saturation (clamped to [0, 1]).
    """
    if x.shape[1] != 3:
        return x
    shift = hue.to(x.dtype).view(-1, 1, 1)
    r, g, b = x.unbind(dim=1)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    # hue in sextants [0, 6)
    sextant = torch.where(
        value == r,
        torch.remainder((g - b) / safe, 6),
        torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4),
    )
    sextant = torch.where(chroma > 0, sextant, torch.zeros_like(sextant))
    hue_shifted = torch.remainder(sextant + shift * 6, 6)
    sat = chroma / torch.where(value > 0, value, torch.ones_like(value))
    if saturation is not None:
        sat = (sat + saturation.to(x.dtype).view(-1, 1, 1)).clamp_(0, 1)
    scale = value * sat
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(hue_shifted + n, 6)
        channels.append(value - scale * torch.minimum(k, 4 - k).clamp_(0, 1))
    return torch.stack(channels, dim=1)

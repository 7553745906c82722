"""Colour operations on batches with per-sample parameters."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["shift_hue_saturation"]

_OPPOSITE_HUE = torch.tensor([3.0, 5.0, 1.0]).view(1, 3, 1, 1)  # sextant opposite r, g, b


def shift_hue_saturation(x: Tensor, hue: Tensor, saturation: Tensor | None = None) -> Tensor:
    """Rotate the hue by ``hue`` turns and add ``saturation`` in HSV space, value kept.

    Args:
        x: (B, C, H, W) in [0, 1]; grey images (C = 1) are returned unchanged.
        hue: (B,) hue shift as a fraction of a full turn.
        saturation: (B,) amount added to the saturation (clamped to [0, 1]).
    """
    if x.shape[1] != 3:
        return x
    r, g, b = x.unbind(dim=1)
    value = torch.maximum(torch.maximum(r, g), b)
    chroma = value - torch.minimum(torch.minimum(r, g), b)
    inv = chroma.clamp_min(1e-20).reciprocal_()
    # Hexagonal hue in sextants. A grey pixel (chroma 0) has r = g = b and gets hue 0.
    # In-place ops and out= throughout: on CPU, fresh large buffers cost page faults.
    sextant = torch.sub(r, g).mul_(inv).add_(4)
    torch.where(value == g, torch.sub(b, r).mul_(inv).add_(2), sextant, out=sextant)
    torch.where(value == r, torch.sub(g, b).mul_(inv), sextant, out=sextant)
    sextant.add_(hue.to(x.dtype).view(-1, 1, 1) * 6).div_(6)
    sextant.sub_(torch.floor(sextant)).mul_(6)  # shifted hue, wrapped into [0, 6)
    if saturation is None:
        scale = chroma  # value * saturation
    else:
        sat = chroma.div_(value.clamp_min(1e-20))
        scale = sat.add_(saturation.to(x.dtype).view(-1, 1, 1)).clamp_(0, 1).mul_(value)
    # Channel c = value - scale * w_c(hue): w_c is 0 within one sextant of the channel's own
    # hue (r 0, g 2, b 4), 1 beyond two, linear between; i.e. clamp(max(2 - d, d - 4), 0, 1)
    # with d = |hue - centre_c| and centres 3, 5, 1 (opposite the channel's hue).
    d = sextant.unsqueeze(1) - _OPPOSITE_HUE.to(x.device, x.dtype)
    d.abs_()
    weight = torch.maximum(torch.sub(2, d), d.sub_(4), out=d).clamp_(0, 1)
    return weight.mul_(scale.unsqueeze(1)).neg_().add_(value.unsqueeze(1))

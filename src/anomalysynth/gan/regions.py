"""The local regions AnomalyHybrid manipulates: rotated ellipses inside the foreground.

A region is drawn as numbers only (area ratio, aspect, angle and a uniform number
that picks the centre), so it can be placed inside any foreground mask at apply
time: the centre is the ``floor(u * n)``-th foreground pixel in raster order.
Elongated ellipses (aspect up to ``max_aspect``) stand for cracks and cuts, round
ones for holes and blobs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["ellipse_region", "region_centre"]


def region_centre(foreground: Tensor, centre_u: Tensor) -> Tensor:
    """(B, 2) centres (y, x) in pixels: the ``floor(u * n)``-th foreground pixel of each (B, 1, H, W) mask.

    Samples without foreground get the image centre (their region is emptied by the
    foreground afterwards)."""
    b, _, h, w = foreground.shape
    out = torch.empty(b, 2, dtype=torch.float64)
    for i in range(b):
        index = torch.nonzero(foreground[i, 0].flatten() > 0).flatten()
        if index.numel() == 0:
            out[i] = torch.tensor([(h - 1) / 2, (w - 1) / 2])
            continue
        k = min(int(float(centre_u[i]) * index.numel()), index.numel() - 1)
        flat = int(index[k])
        out[i] = torch.tensor([flat // w, flat % w], dtype=torch.float64)
    return out


def ellipse_region(
    centre: Tensor, area_ratio: Tensor, aspect: Tensor, angle: Tensor, height: int, width: int
) -> Tensor:
    """(B, 1, H, W) binary masks of rotated ellipses.

    Args:
        centre: (B, 2) centres (y, x) in pixels.
        area_ratio: (B,) ellipse area as a fraction of ``H * W``.
        aspect: (B,) ratio of the long to the short axis (>= 1).
        angle: (B,) rotation of the long axis, radians.
    """
    area = area_ratio.double() * height * width
    a = torch.sqrt(area / math.pi * aspect.double())  # semi-major axis, pixels
    c = torch.sqrt(area / math.pi / aspect.double())  # semi-minor axis
    ys = torch.arange(height, dtype=torch.float64).view(1, -1, 1)
    xs = torch.arange(width, dtype=torch.float64).view(1, 1, -1)
    dy = ys - centre[:, 0].double().view(-1, 1, 1)
    dx = xs - centre[:, 1].double().view(-1, 1, 1)
    cos, sin = torch.cos(angle.double()).view(-1, 1, 1), torch.sin(angle.double()).view(-1, 1, 1)
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    inside = (u / a.clamp_min(0.5).view(-1, 1, 1)) ** 2 + (v / c.clamp_min(0.5).view(-1, 1, 1)) ** 2 <= 1
    return inside.unsqueeze(1).float()

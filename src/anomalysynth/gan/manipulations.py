"""AnomalyHybrid's inference manipulations of the target's depth and edge maps.

Inside a region ``R`` (B, 1, H, W, binary), the maps of the target (``t``) are edited
using those of a reference (``r``); outside ``R`` they are left exactly as they are:

* ``remove``: depth and edges set to background (0), and the region's outline drawn
  as an edge: holes, cracks, cuts;
* ``replace``: the target's values replaced by the reference's;
* ``merge``: both structures at once (pixel-wise maximum of depth and of edges);
* ``tps``: the target's maps warped by a thin-plate spline that pushes the region's
  centre by ``tps_shift`` (a fraction of the region's size) in direction ``tps_angle``,
  with a ring of fixed control points around the region: a local bulge or dent.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["MANIPULATIONS", "manipulate", "outline", "region_tps"]

MANIPULATIONS = ("remove", "replace", "merge", "tps")


def manipulate(
    kind: str,
    depth: Tensor,
    edge: Tensor,
    reference_depth: Tensor,
    reference_edge: Tensor,
    region: Tensor,
    tps_shift: Tensor | None = None,
    tps_angle: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Edited (depth, edge), each (B, 1, H, W); equal to the inputs wherever ``region`` is 0."""
    if kind not in MANIPULATIONS:
        raise ValueError(f"Manipulation must be one of {MANIPULATIONS}; got {kind!r}.")
    if kind == "remove":
        new_depth = torch.zeros_like(depth)
        new_edge = outline(region).to(edge.dtype)
    elif kind == "replace":
        new_depth, new_edge = reference_depth, reference_edge
    elif kind == "merge":
        new_depth, new_edge = torch.maximum(depth, reference_depth), torch.maximum(edge, reference_edge)
    else:
        if tps_shift is None or tps_angle is None:
            raise ValueError("The 'tps' manipulation needs `tps_shift` and `tps_angle`.")
        warped = region_tps(torch.cat([depth, edge], dim=1), region, tps_shift, tps_angle)
        new_depth, new_edge = warped[:, :1], warped[:, 1:]
    inside = region > 0
    return torch.where(inside, new_depth, depth), torch.where(inside, new_edge, edge)


def outline(region: Tensor) -> Tensor:
    """(B, 1, H, W) inner boundary of binary regions: region pixels with one of their 8 neighbours outside."""
    eroded = -F.max_pool2d(-F.pad(region, (1, 1, 1, 1), value=1.0), 3, stride=1)
    return (region - eroded).clamp(0, 1)


def region_tps(maps: Tensor, region: Tensor, shift: Tensor, angle: Tensor) -> Tensor:
    """Warp (B, C, H, W) maps with a TPS centred on each region.

    Control points: the region's centroid, moved by ``shift`` times the region's radius
    in direction ``angle``; eight points on a ring of twice the radius and the four
    image corners stay fixed.
    """
    from kornia.geometry.transform import get_tps_transform, warp_image_tps

    b, _, h, w = maps.shape
    dtype = maps.dtype
    ys = (torch.arange(h, dtype=dtype, device=maps.device) * 2 + 1) / h - 1
    xs = (torch.arange(w, dtype=dtype, device=maps.device) * 2 + 1) / w - 1
    mass = region.sum(dim=(1, 2, 3)).clamp_min(1)
    cy = (region[:, 0] * ys.view(1, -1, 1)).sum(dim=(1, 2)) / mass
    cx = (region[:, 0] * xs.view(1, 1, -1)).sum(dim=(1, 2)) / mass
    radius = torch.sqrt(mass / (h * w) * 4 / math.pi).clamp_min(2 / min(h, w))  # in [-1, 1] units
    ring = torch.arange(8, dtype=dtype, device=maps.device) * (math.pi / 4)
    src = [torch.stack([cx, cy], dim=-1).unsqueeze(1)]
    src.append(
        torch.stack(
            [cx[:, None] + 2 * radius[:, None] * torch.cos(ring), cy[:, None] + 2 * radius[:, None] * torch.sin(ring)],
            dim=-1,
        )
    )
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], dtype=dtype, device=maps.device)
    src.append(corners.expand(b, 4, 2))
    src_points = torch.cat(src, dim=1)
    move = shift.to(dtype) * radius
    offset = torch.stack([move * torch.cos(angle.to(dtype)), move * torch.sin(angle.to(dtype))], dim=-1)
    dst_points = src_points.clone()
    dst_points[:, 0] += offset
    # kornia's convention: solve with (dst, src); the kernel centres are src
    kernel_weights, affine_weights = get_tps_transform(dst_points, src_points)
    return warp_image_tps(maps, src_points, kernel_weights, affine_weights, align_corners=False, padding_mode="border")

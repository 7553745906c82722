"""Anomalous regions as images: the square box around each mask, cropped and resized.

The mask-restricted distribution metrics (``fid_mask_*``, ``kid_mask_*``,
``is_mask_*``) compare these crops instead of whole images, so an unchanged
background does not dilute the anomaly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mask_crops"]


def mask_crops(images: Tensor, masks: Tensor, size: int, margin: float = 0.25, min_side: int = 8) -> Tensor:
    """(M, C, size, size) crops around the masks' boxes; images with an empty mask are dropped.

    Args:
        images: (N, C, H, W) float images.
        masks: (N, 1, H, W), positive where the anomaly is.
        size: side of the returned crops.
        margin: the box grows by this fraction of its side on every side.
        min_side: smallest crop side in pixels (thin scratches keep some context).
    """
    if images.ndim != 4 or masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(
            f"Expected (N, C, H, W) images and (N, 1, H, W) masks; got {tuple(images.shape)}, {tuple(masks.shape)}."
        )
    if images.shape[0] != masks.shape[0] or images.shape[-2:] != masks.shape[-2:]:
        raise ValueError(f"Images {tuple(images.shape)} and masks {tuple(masks.shape)} do not match.")
    h, w = images.shape[-2:]
    crops = []
    for image, mask in zip(images, masks, strict=True):
        ys, xs = (mask[0] > 0).nonzero(as_tuple=True)
        if ys.numel() == 0:
            continue
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        side = max(y1 - y0, x1 - x0)
        side = min(max(round(side * (1 + 2 * margin)), min_side), h, w)
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        top = min(max(cy - side // 2, 0), h - side)
        left = min(max(cx - side // 2, 0), w - side)
        crop = image[:, top : top + side, left : left + side].unsqueeze(0)
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    if not crops:
        return images.new_empty(0, images.shape[1], size, size)
    return torch.cat(crops).clamp(0, 1)

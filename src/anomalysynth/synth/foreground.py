"""Foreground masks: where on an object anomalies may be placed.

Object categories (a screw on a plain background) need anomalies on the object,
texture categories anywhere. ``foreground_mask`` thresholds the grey levels per
image (Otsu or triangle), optionally inverts, then closes and opens the result
with a square structuring element. All operations are batched and exact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["FOREGROUND_METHODS", "foreground_mask", "otsu_threshold", "triangle_threshold", "to_gray"]

FOREGROUND_METHODS = frozenset({"ones", "otsu", "triangle"})
_BINS = 256


def foreground_mask(
    images: Tensor,
    method: str = "otsu",
    invert: bool = False,
    closing: int | None = None,
    opening: int | None = None,
) -> Tensor:
    """Foreground of each image.

    Args:
        images: (B, C, H, W) float in [0, 1].
        method: ``"ones"`` (everything, for textures), ``"otsu"`` or ``"triangle"``.
        invert: keep the pixels at or below the threshold instead of above.
        closing: closing kernel size in pixels (odd); default ``min(H, W) // 32`` made odd.
        opening: opening kernel size in pixels (odd); default as ``closing``.

    Returns:
        (B, 1, H, W) float mask with values in {0, 1}.
    """
    if method not in FOREGROUND_METHODS:
        raise ValueError(f"Unknown foreground method {method!r}; expected one of {sorted(FOREGROUND_METHODS)}.")
    b, _, h, w = images.shape
    if method == "ones":
        return images.new_ones(b, 1, h, w)
    gray = to_gray(images)
    threshold = otsu_threshold(gray) if method == "otsu" else triangle_threshold(gray)
    mask = gray > threshold.view(-1, 1, 1, 1)
    if invert:
        mask = ~mask
    mask = mask.to(images.dtype)
    default = max(3, (min(h, w) // 32) | 1)
    mask = _open(_close(mask, closing or default), opening or default)
    return mask


def to_gray(images: Tensor) -> Tensor:
    """(B, 1, H, W) luminance (ITU-R 601) of (B, C, H, W) images."""
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _histogram(gray: Tensor) -> Tensor:
    bins = (gray.flatten(1).clamp(0, 1) * (_BINS - 1)).round().long()
    hist = torch.zeros(gray.shape[0], _BINS, dtype=torch.float64, device=gray.device)
    return hist.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float64))


def otsu_threshold(gray: Tensor) -> Tensor:
    """(B,) Otsu threshold in [0, 1] of (B, 1, H, W) grey images (maximum between-class variance)."""
    hist = _histogram(gray)
    p = hist / hist.sum(dim=1, keepdim=True)
    levels = torch.arange(_BINS, dtype=torch.float64, device=gray.device)
    w0 = p.cumsum(dim=1)
    mu = (p * levels).cumsum(dim=1)
    mu_total = mu[:, -1:]
    between = (mu_total * w0 - mu) ** 2 / (w0 * (1 - w0)).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w0 < 1), between, torch.zeros_like(between))
    return (between.argmax(dim=1).to(gray.dtype) + 0.5) / (_BINS - 1)


def triangle_threshold(gray: Tensor) -> Tensor:
    """(B,) triangle (Zack) threshold in [0, 1] of (B, 1, H, W) grey images."""
    hist = _histogram(gray)
    out = []
    levels = torch.arange(_BINS, dtype=torch.float64, device=gray.device)
    for row in hist:
        nonzero = torch.nonzero(row).flatten()
        lo, hi = int(nonzero[0]), int(nonzero[-1])
        peak = int(row.argmax())
        # the line runs from the peak to the end of the histogram farther from it
        far = lo if (peak - lo) > (hi - peak) else hi
        if far == peak:
            out.append(float(peak))
            continue
        x0, y0, x1, y1 = float(peak), float(row[peak]), float(far), float(row[far])
        seg = slice(min(peak, far), max(peak, far) + 1)
        xs, ys = levels[seg], row[seg]
        dist = ((y1 - y0) * xs - (x1 - x0) * ys + x1 * y0 - y1 * x0).abs()
        out.append(float(xs[dist.argmax()]))
    return (torch.tensor(out, dtype=gray.dtype, device=gray.device) + 0.5) / (_BINS - 1)


def _dilate(mask: Tensor, size: int) -> Tensor:
    return F.max_pool2d(mask, size, stride=1, padding=size // 2)


def _erode(mask: Tensor, size: int) -> Tensor:
    return -F.max_pool2d(-mask, size, stride=1, padding=size // 2)


def _close(mask: Tensor, size: int) -> Tensor:
    return _erode(_dilate(mask, size | 1), size | 1)


def _open(mask: Tensor, size: int) -> Tensor:
    return _dilate(_erode(mask, size | 1), size | 1)

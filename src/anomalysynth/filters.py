"""Small image filters shared by the models and the diffusion code."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["gaussian_blur"]


def gaussian_blur(
    maps: Tensor,
    sigma: float,
    kernel_size: int | None = None,
    padding: Literal["replicate", "reflect"] = "replicate",
) -> Tensor:
    """Smooth (B, C, H, W) maps with a normalised Gaussian of ``sigma`` pixels.

    Two 1-D passes (the Gaussian is separable; the same result as its 2-D kernel);
    ``kernel_size`` defaults to anomalib's 2 * round(4 sigma) + 1, and the borders are
    padded by ``padding`` (reflect needs maps larger than half the kernel).
    """
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0; got {sigma}.")
    if kernel_size is None:
        kernel_size = 2 * int(4.0 * sigma + 0.5) + 1
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"`kernel_size` must be odd and >= 1; got {kernel_size}.")
    if maps.dim() != 4:
        raise ValueError(f"Expected (B, C, H, W) maps; got shape {tuple(maps.shape)}.")
    radius = kernel_size // 2
    x = torch.arange(-radius, radius + 1, device=maps.device, dtype=maps.dtype)
    kernel = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    kernel = kernel / kernel.sum()
    b, c, h, w = maps.shape
    flat = maps.reshape(b * c, 1, h, w)
    out = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode=padding), kernel.view(1, 1, 1, -1))
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode=padding), kernel.view(1, 1, -1, 1))
    return out.reshape(b, c, h, w)

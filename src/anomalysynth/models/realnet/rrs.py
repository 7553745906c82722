"""Reconstruction residual selection (RRS, RealNet)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["residual_selection", "upsample_to"]


def residual_selection(
    residuals: list[Tensor], ratio: float = 1 / 3, norm: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Keep the most informative residual channels per sample.

    The residuals of every level are upsampled to the finest level and
    concatenated; a non-affine batch normalisation ranks the channels (only for
    ranking), and per sample the top ``r/2`` channels by global max and the top
    ``r/2`` by global mean (``r = ratio`` of all channels, by max first, then by
    mean among the rest) are gathered from the raw residuals.

    Args:
        residuals: per level (B, C_k, h_k, w_k), finest first.
        ratio: fraction of all channels kept.
        norm: the ranking normalisation, normally a ``BatchNorm2d(affine=False)``
            (batch statistics in training, running statistics in evaluation);
            default: batch statistics.

    Returns:
        (B, 2 * (r // 2), h_0, w_0).
    """
    size = residuals[0].shape[-2:]
    stacked = torch.cat(upsample_to(residuals, size), dim=1)
    total = stacked.shape[1]
    half = max(1, int(total * ratio) // 2)
    ranked = norm(stacked) if norm is not None else F.batch_norm(stacked, None, None, training=True)
    by_max = ranked.flatten(2).amax(dim=2)
    top_max = by_max.topk(half, dim=1).indices
    by_mean = ranked.flatten(2).mean(dim=2).scatter(1, top_max, float("-inf"))
    top_mean = by_mean.topk(half, dim=1).indices
    index = torch.cat([top_max, top_mean], dim=1)
    return torch.gather(stacked, 1, index[..., None, None].expand(-1, -1, *size))


def upsample_to(maps: list[Tensor], size: torch.Size | tuple[int, int]) -> list[Tensor]:
    """Each (B, C, h, w) map resized (bilinear) to ``size``; maps already that size as they are."""
    return [
        m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps
    ]

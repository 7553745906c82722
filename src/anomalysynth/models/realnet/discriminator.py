"""RealNet's discriminator and what it sees: the reconstruction residuals reduced by
residual selection (RRS), optionally beside the selected features themselves
(projected to fewer channels by a learned 1x1 convolution)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "discriminator_input",
    "discriminator_network",
    "residual_selection",
    "rrs_kept_channels",
    "upsample_to",
]


def discriminator_input(
    residuals: list[Tensor],
    features: Sequence[Tensor],
    rrs_ratio: float,
    rrs_norm: Callable[[Tensor], Tensor] | None,
    with_features: bool = False,
    projection: nn.Module | None = None,
) -> Tensor:
    """(B, kept [+ feature channels], h_0, w_0): the RRS-selected residuals at the finest level,
    followed (``with_features``) by the selected features upsampled to it, through ``projection``
    when given (RealNet: residuals only)."""
    selected = residual_selection(residuals, rrs_ratio, norm=rrs_norm)
    if not with_features:
        return selected
    upsampled = torch.cat(upsample_to(list(features), selected.shape[-2:]), dim=1)
    if projection is not None:
        upsampled = projection(upsampled)
    return torch.cat([selected, upsampled], dim=1)


def discriminator_network(channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU blocks and a 1x1 convolution to 2 classes (normal, anomalous)."""
    width = max(16, min(128, channels))
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, width // 2, 3, padding=1),
        nn.BatchNorm2d(width // 2),
        nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, 2, 1),
    )


def rrs_kept_channels(total: int, ratio: float) -> int:
    """How many of ``total`` residual channels RRS keeps: 2 * max(1, floor(total * ratio) // 2)."""
    return 2 * max(1, int(total * ratio) // 2)


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
    half = rrs_kept_channels(stacked.shape[1], ratio) // 2
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

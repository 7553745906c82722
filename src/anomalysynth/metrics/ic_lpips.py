"""Intra-cluster perceptual diversity, IC-LPIPS (Ojha et al., CVPR 2021).

1. Assign every generated image to its nearest centre (a real image) by the
   perceptual distance.
2. Average the distance over all pairs of generated images inside each cluster
   (clusters with fewer than two members are skipped).
3. Average over the clusters.

It is 0 when a generator repeats one image per centre and grows with the variety
of what it makes around each real image. ``masks`` gives the mask-restricted
variant: each pair is compared on the union of its two masks.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from anomalysynth.metrics.perceptual import PerceptualDistance

__all__ = ["ic_lpips", "nearest_centres"]


@torch.no_grad()
def ic_lpips(
    distance: PerceptualDistance,
    generated: Tensor,
    centres: Tensor,
    masks: Tensor | None = None,
    max_per_cluster: int = 50,
    batch_size: int = 32,
) -> float:
    """IC-LPIPS of (N, C, H, W) generated images around (K, C, H, W) real centres.

    Args:
        distance: the perceptual distance (its ``name`` belongs in the metric name).
        generated: images in [0, 1], at the centres' size.
        centres: the real images the clusters form around.
        masks: optional (N, 1, H, W) masks of the generated images (mask-restricted variant).
        max_per_cluster: the first members of each cluster that are compared (pairs grow
            quadratically; Ojha et al. compare 50 per cluster).
        batch_size: images per network pass.

    Returns:
        The mean intra-cluster distance, or NaN when no cluster has two members.
    """
    if generated.shape[1:] != centres.shape[1:]:
        raise ValueError(
            f"`generated` and `centres` must share (C, H, W); got {tuple(generated.shape)} and {tuple(centres.shape)}."
        )
    if masks is not None and (masks.shape[0] != generated.shape[0] or masks.shape[1] != 1):
        raise ValueError(f"`masks`: expected ({generated.shape[0]}, 1, H, W); got {tuple(masks.shape)}.")
    gen = distance.embed(generated, batch_size)
    cen = distance.embed(centres, batch_size)
    assignment = nearest_centres(distance, gen, cen)
    cluster_means = []
    for k in range(centres.shape[0]):
        members = (assignment == k).nonzero().flatten()[:max_per_cluster].tolist()
        if len(members) < 2:
            continue
        first, second = zip(*itertools.combinations(members, 2), strict=True)
        ia, ib = torch.tensor(first), torch.tensor(second)
        mask = None if masks is None else torch.maximum(masks[ia], masks[ib])
        values = []
        for s in range(0, len(ia), 256):
            part = slice(s, s + 256)
            values.append(
                distance.distance(
                    [f[ia[part]] for f in gen], [f[ib[part]] for f in gen], None if mask is None else mask[part]
                )
            )
        cluster_means.append(float(torch.cat(values).mean()))
    return sum(cluster_means) / len(cluster_means) if cluster_means else math.nan


def nearest_centres(distance: PerceptualDistance, generated: list[Tensor], centres: list[Tensor]) -> Tensor:
    """(N,) index of the nearest centre of every embedded generated image."""
    n, k = generated[0].shape[0], centres[0].shape[0]
    table = torch.empty(n, k, dtype=torch.float64)
    for j in range(k):
        table[:, j] = distance.distance(generated, [c[j : j + 1].expand(n, -1, -1, -1) for c in centres])
    return table.argmin(dim=1)

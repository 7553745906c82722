"""A normality term that needs no anomaly: each place's distance to the normal images at that place.

PaDiM (Defard et al., ICPR 2021) models the backbone features of the normal training
images at every position with a Gaussian and scores a place by its Mahalanobis
distance to the Gaussian of its own position. Where the objects are aligned (a ball
screw always at the same height, a board always in the same frame) a place is
compared with what is normal *there*, which neither the discriminator (it knows only
the anomalies it was shown) nor a nearest-neighbour bank (it pools every position)
can do.

The embedding is a seeded random subset of ``features`` channels of the chosen levels
(PaDiM's random dimensionality reduction), brought to the first chosen level's size;
the covariances are regularised by ``epsilon`` I (PaDiM: 0.01). Distances are divided
by ``scale``, the mean distance on held-out normal images, so normal places sit near 1
and the term mixes into the discriminator's probability like the other normality terms
(:func:`anomalysynth.models.realnet.scoring.mix_normality`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalysynth.models.realnet.nearest_neighbour import held_out

__all__ = ["GaussianNormality", "regularised_precision"]


def regularised_precision(samples: Tensor, epsilon: float) -> Tensor:
    """(P, D, D) inverses of the covariances of (P, N, D) samples (N - 1 in the
    denominator) with ``epsilon`` I added, in the samples' dtype.

    By Cholesky, not ``torch.linalg.inv``: the batched LU behind ``inv`` races in oneMKL
    with more than one thread for matrices past ~150 channels (wrong inverses or a
    RuntimeError; pytorch#142815). The regularised covariance is symmetric positive
    definite, which Cholesky needs.
    """
    centred = samples - samples.mean(dim=1, keepdim=True)
    covariance = torch.bmm(centred.transpose(1, 2), centred) / max(samples.shape[1] - 1, 1)
    covariance += epsilon * torch.eye(samples.shape[2], dtype=covariance.dtype, device=covariance.device)
    return torch.cholesky_inverse(torch.linalg.cholesky(covariance))


class GaussianNormality(nn.Module):
    """Per-position Mahalanobis distance of backbone features to the normal training images.

    Args:
        levels: indices of the feature levels used.
        channels: channels of each of those levels.
        features: channels kept (a seeded random subset of all the levels' channels).
        epsilon: the covariance's ridge (``epsilon`` I is added to each position's).
        seed: seed of the channel subset.
    """

    index: Tensor
    grid: Tensor
    mean: Tensor
    precision: Tensor
    scale: Tensor
    fitted: Tensor

    def __init__(
        self, levels: Sequence[int], channels: Sequence[int], features: int = 64, epsilon: float = 0.01, seed: int = 0
    ) -> None:
        super().__init__()
        if not levels or len(levels) != len(channels):
            raise ValueError(f"Expected one channel count per level; got levels {levels} and channels {channels}.")
        total = sum(int(c) for c in channels)
        if not 1 <= features <= total:
            raise ValueError(f"`features` must lie in [1, {total}] (the levels' channels); got {features}.")
        if epsilon <= 0:
            raise ValueError(f"`epsilon` must be > 0; got {epsilon}.")
        self.levels = [int(k) for k in levels]
        self.epsilon = float(epsilon)
        generator = torch.Generator().manual_seed(int(seed))
        self.register_buffer("index", torch.randperm(total, generator=generator)[:features].sort().values)
        self.register_buffer("grid", torch.zeros(2, dtype=torch.long))  # (h, w) of the fitted positions
        self.register_buffer("mean", torch.zeros(0, features))
        self.register_buffer("precision", torch.zeros(0, features, features))
        self.register_buffer("scale", torch.tensor(1.0))
        self.register_buffer("fitted", torch.tensor(False))

    def embed(self, features: Sequence[Tensor]) -> Tensor:
        """(B, D, h, w): the chosen channels of the chosen levels at the first chosen level's size."""
        chosen = [features[k] for k in self.levels]
        size = chosen[0].shape[-2:]
        out = [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="nearest") for f in chosen]
        return torch.cat(out, dim=1).index_select(1, self.index.to(chosen[0].device))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """(B, 1, h, w) Mahalanobis distance at each position over ``scale`` (near 1 on normal places).

        Features of another size than the fitted one are resampled (bilinear) to the fitted
        grid first, so each place is compared with the same relative position; the map is
        then at the fitted grid's size.
        """
        if not bool(self.fitted):
            raise RuntimeError("The Gaussian normality term is not fitted yet: call `fit(embeddings)` first.")
        embedding = self.embed(features)
        grid = (int(self.grid[0]), int(self.grid[1]))
        if tuple(embedding.shape[-2:]) != grid:
            embedding = F.interpolate(embedding, size=grid, mode="bilinear", align_corners=False)
        return (self.distance(embedding) / self.scale.clamp_min(1e-12)).view(embedding.shape[0], 1, *grid)

    def distance(self, embedding: Tensor) -> Tensor:
        """(B, h*w) Mahalanobis distances of (B, D, h, w) embeddings."""
        diff = embedding.flatten(2).permute(2, 0, 1).to(self.mean.dtype) - self.mean.unsqueeze(1)  # (P, B, D)
        squared = (torch.bmm(diff, self.precision) * diff).sum(dim=2)  # (P, B)
        return squared.clamp_min_(0).sqrt_().T.to(embedding.dtype)

    @torch.no_grad()
    def fit(self, embeddings: Tensor) -> None:
        """The per-position mean and precision, and the scale, from (N, D, h, w) embeddings of N clean images.

        Every 8th image (at least one, when N > 1) is held out to measure ``scale``; the
        Gaussians come from the rest (all of them when N == 1). Accumulated in float64.
        """
        if embeddings.ndim != 4 or embeddings.shape[0] < 1:
            raise ValueError(f"Expected (N, D, h, w) embeddings of N >= 1 images; got {tuple(embeddings.shape)}.")
        n, d = embeddings.shape[:2]
        if d != len(self.index):
            raise ValueError(f"Expected embeddings of {len(self.index)} channels (`embed`); got {d}.")
        held = held_out(n)
        fit = embeddings[~held].flatten(2).permute(2, 0, 1).double()  # (P, N, D)
        self.grid.copy_(torch.tensor(embeddings.shape[-2:]))
        self.mean = fit.mean(dim=1).float().to(self.mean.device)
        self.precision = regularised_precision(fit, self.epsilon).float().to(self.precision.device)
        calibration = embeddings[held] if bool(held.any()) else embeddings
        scale = self.distance(calibration.to(self.mean.device)).mean()
        self.scale.fill_(float(scale) if float(scale) > 0 else 1.0)
        self.fitted.fill_(True)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "fitted" not in state_dict:
            # a checkpoint from before the term existed: not fitted (the term stays out of the map)
            for name, buffer in self.named_buffers(recurse=False):
                state_dict[prefix + name] = buffer.detach().clone()
            state_dict[prefix + "fitted"] = torch.tensor(False)
        # the number of positions is the saved model's: take the shapes before loading
        for name in ("mean", "precision"):
            saved = state_dict.get(prefix + name)
            if isinstance(saved, Tensor) and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

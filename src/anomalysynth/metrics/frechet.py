"""Frechet distance between two sets of features (FID when the features are Inception's).

``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))`` with unbiased
covariances (Heusel et al., 2017). The trace of the matrix square root is the sum
of the square roots of the eigenvalues of ``S_a S_b``, computed in float64 from
symmetric problems only: with centred features ``A`` (N, D) and ``B`` (M, D) the
non-zero eigenvalues of ``S_a S_b`` are the squared singular values of
``A B^T / sqrt((N-1)(M-1))``, an (N, M) matrix, used when the sets are smaller
than the feature size; otherwise ``eigvalsh(S_a^(1/2) S_b S_a^(1/2))``.
With fewer samples than feature dimensions the covariances are singular and the
estimate is strongly biased upwards: compare only numbers computed on sets of the
same sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["frechet_distance"]


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between the Gaussians fitted to (N, D) and (M, D) features (N, M >= 2)."""
    a, b = _checked(features_a, "features_a"), _checked(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature sizes differ: {a.shape[1]} and {b.shape[1]}.")
    n, m, d = a.shape[0], b.shape[0], a.shape[1]
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = a - mu_a, b - mu_b
    trace_a, trace_b = ca.square().sum() / (n - 1), cb.square().sum() / (m - 1)
    if min(n, m) < d:
        sqrt_trace = torch.linalg.svdvals(ca @ cb.T).sum() / math.sqrt((n - 1) * (m - 1))
    else:
        cov_a, cov_b = ca.T @ ca / (n - 1), cb.T @ cb / (m - 1)
        values, vectors = torch.linalg.eigh(cov_a)
        root_a = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
        sqrt_trace = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + trace_a + trace_b - 2 * sqrt_trace
    return max(float(value), 0.0)


def _checked(features: Tensor, what: str) -> Tensor:
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"`{what}`: expected (N, D) features with N >= 2; got {tuple(features.shape)}.")
    return features.double()

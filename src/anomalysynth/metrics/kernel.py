"""Kernel distance (KID, Binkowski et al., 2018): the unbiased MMD^2 with a cubic polynomial kernel.

``k(x, y) = (x . y / D + 1)^3``. The estimator averages the kernel over pairs of
distinct samples within each set and all pairs across the sets, so its expectation
is 0 when both sets come from one distribution (unlike FID, it can be negative).
``subset_size`` / ``num_subsets`` reproduce the papers' protocol (the mean and std
over random subsets), with subsets drawn from an explicit generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kernel_distance", "mmd2_unbiased"]


def kernel_distance(
    features_a: Tensor,
    features_b: Tensor,
    subset_size: int | None = None,
    num_subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over subsets.

    Args:
        features_a, features_b: (N, D) and (M, D) features, N, M >= 2.
        subset_size: samples per subset from each set; ``None`` uses every sample
            once (one subset, std 0).
        num_subsets: subsets drawn when ``subset_size`` is given.
        seed: seeds the subset draws.
    """
    a, b = features_a.double(), features_b.double()
    for what, f in (("features_a", a), ("features_b", b)):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"`{what}`: expected (N, D) features with N >= 2; got {tuple(f.shape)}.")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature sizes differ: {a.shape[1]} and {b.shape[1]}.")
    if subset_size is None:
        return mmd2_unbiased(a, b), 0.0
    if not 2 <= subset_size <= min(a.shape[0], b.shape[0]):
        raise ValueError(
            f"`subset_size` must lie in [2, {min(a.shape[0], b.shape[0])}] (the smaller set); got {subset_size}."
        )
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(num_subsets):
        ia = torch.randperm(a.shape[0], generator=generator)[:subset_size]
        ib = torch.randperm(b.shape[0], generator=generator)[:subset_size]
        values.append(mmd2_unbiased(a[ia], b[ib]))
    scores = torch.tensor(values, dtype=torch.float64)
    return float(scores.mean()), float(scores.std(unbiased=False)) if len(values) > 1 else 0.0


def mmd2_unbiased(a: Tensor, b: Tensor) -> float:
    """Unbiased MMD^2 of (N, D) and (M, D) features under ``(x . y / D + 1)^3``."""
    d = a.shape[1]
    k_aa = (a @ a.T / d + 1) ** 3
    k_bb = (b @ b.T / d + 1) ** 3
    k_ab = (a @ b.T / d + 1) ** 3
    n, m = a.shape[0], b.shape[0]
    within_a = (k_aa.sum() - k_aa.diagonal().sum()) / (n * (n - 1))
    within_b = (k_bb.sum() - k_bb.diagonal().sum()) / (m * (m - 1))
    return float(within_a + within_b - 2 * k_ab.mean())

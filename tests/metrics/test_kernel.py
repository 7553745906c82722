"""KID: unbiased on random splits of one set, equal to torchmetrics' on the same features."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.metrics import kernel_distance
from tests.metrics.conftest import FeaturesAsInput


def test_matches_torchmetrics_with_the_whole_sets_as_one_subset():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 12, generator=g)
    b = torch.randn(30, 12, generator=g) + 0.5
    metric = KernelInceptionDistance(feature=FeaturesAsInput(12), subsets=3, subset_size=30)
    metric.update(a, real=True)
    metric.update(b, real=False)
    expected, _ = metric.compute()
    assert kernel_distance(a, b)[0] == pytest.approx(float(expected), rel=1e-5)


def test_subsets_match_torchmetrics_statistics_in_distribution():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(3)
    a = torch.randn(60, 8, generator=g)
    b = torch.randn(60, 8, generator=g) * 1.3
    torch.manual_seed(0)
    metric = KernelInceptionDistance(feature=FeaturesAsInput(8), subsets=200, subset_size=20)
    metric.update(a, real=True)
    metric.update(b, real=False)
    expected_mean, expected_std = metric.compute()
    mean, std = kernel_distance(a, b, subset_size=20, num_subsets=200)
    # different random subsets: the means agree within a few standard errors
    assert mean == pytest.approx(float(expected_mean), abs=4 * float(expected_std) / 200**0.5)
    assert std == pytest.approx(float(expected_std), rel=0.3)


def test_unbiased_on_shuffled_splits_of_one_set():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(80, 10, generator=g, dtype=torch.float64)
    unbiased, biased = [], []
    for _ in range(200):
        order = torch.randperm(80, generator=g)
        a, b = features[order[:40]], features[order[40:]]
        unbiased.append(kernel_distance(a, b)[0])
        biased.append(biased_mmd2(a, b))
    values = torch.tensor(unbiased)
    sem = float(values.std()) / len(values) ** 0.5
    assert abs(float(values.mean())) < 3 * sem
    assert float(torch.tensor(biased).mean()) > 10 * sem  # the V-statistic is not centred at 0
    shifted = kernel_distance(features[:40], features[40:] + 1.0)[0]
    assert shifted > 20 * sem


def biased_mmd2(a: torch.Tensor, b: torch.Tensor) -> float:
    """The biased (V-statistic) MMD^2: every kernel value, diagonals included."""
    d = a.shape[1]

    def k(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x @ y.T / d + 1) ** 3

    return float(k(a, a).mean() + k(b, b).mean() - 2 * k(a, b).mean())


def test_subset_size_is_checked():
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(torch.zeros(5, 3), torch.zeros(4, 3), subset_size=5)

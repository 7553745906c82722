"""FID: against scipy's matrix square root, torchmetrics' implementation, and its behaviour on images."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import linalg

from anomalysynth.metrics import frechet_distance
from tests.conftest import photo_batch
from tests.metrics.conftest import FeaturesAsInput


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


@pytest.mark.parametrize(("n", "m", "d"), [(60, 80, 6), (9, 12, 30)])  # more samples than features, and fewer
def test_matches_scipy_sqrtm_reference(n, m, d):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    b = 1.5 * torch.randn(m, d, generator=g, dtype=torch.float64) + 0.3
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a.numpy(), b.numpy()), rel=1e-6)


def test_matches_torchmetrics_on_the_same_features():
    from torchmetrics.image.fid import FrechetInceptionDistance

    g = torch.Generator().manual_seed(1)
    a = torch.randn(40, 16, generator=g)
    b = torch.randn(50, 16, generator=g) * 0.7 + 0.2
    metric = FrechetInceptionDistance(feature=FeaturesAsInput(16))
    metric.update(a, real=True)
    metric.update(b, real=False)
    assert frechet_distance(a, b) == pytest.approx(float(metric.compute()), rel=1e-5)


def test_itself_is_zero_and_grows_with_noise(effnet_features):
    images = photo_batch(12, 3, size=64)
    clean = effnet_features.extract(images).features
    assert frechet_distance(clean, clean) == pytest.approx(0.0, abs=1e-6 * float(clean.var(0).sum()))
    values = []
    for sigma in (0.05, 0.1, 0.2, 0.4):
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        noisy = (images + sigma * noise).clamp(0, 1)
        values.append(frechet_distance(clean, effnet_features.extract(noisy).features))
    assert values[0] > 0
    assert all(x < y for x, y in itertools.pairwise(values)), values


def test_bad_input_says_what_was_expected():
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(torch.zeros(1, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="Feature sizes differ"):
        frechet_distance(torch.zeros(3, 4), torch.zeros(3, 5))

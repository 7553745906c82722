"""SimpleNet's Gaussian feature noise: distribution, replay, per-sample generators, masks."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as stats
import torch
from scipy.special import gammaln

from anomalysynth.features import GaussianFeatureNoise


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_noise_is_gaussian_with_the_given_std():
    features = torch.randn(4, 256, 32)
    out = GaussianFeatureNoise(std=0.015)(features, generator=gen(0))
    noise = (out.features - features).flatten().double().numpy()
    assert stats.kstest(noise / 0.015, "norm").pvalue > 0.01
    assert abs(noise.std() - 0.015) < 0.0005 and abs(noise.mean()) < 0.0005
    # strength: the mean noise norm per position, chi with 32 degrees of freedom times sigma
    expected = 0.015 * np.sqrt(2) * np.exp(gammaln(33 / 2) - gammaln(16))
    np.testing.assert_allclose(out.strength.numpy(), expected, rtol=0.03)


def test_replay_and_per_sample_generators():
    features = torch.randn(3, 8, 6, 5)
    noise = GaussianFeatureNoise()
    a = noise(features, generator=[gen(i) for i in range(3)])
    assert torch.equal(noise(features, params=a.params).features, a.features)
    for i in range(3):
        assert torch.equal(noise(features[i : i + 1], generator=gen(i)).features[0], a.features[i])
    assert a.mask.shape == (3, 1, 6, 5) and a.strength.shape == (3,)


def test_mask_restricts_the_noise():
    features = torch.zeros(2, 4, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1
    out = GaussianFeatureNoise()(features, generator=gen(1), mask=mask)
    assert out.features[:, :, 4:].abs().max() == 0 and out.features[:, :, :4].abs().min() > 0
    assert torch.equal(out.mask, mask)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="std"):
        GaussianFeatureNoise(std=0)
    with pytest.raises(ValueError, match="float feature tensor"):
        GaussianFeatureNoise()(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="noise"):
        GaussianFeatureNoise()(torch.zeros(2, 3), params={"noise": torch.zeros(2, 4)})

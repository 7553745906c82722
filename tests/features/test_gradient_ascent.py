"""GLASS's gradient ascent against closed forms on a linear discriminator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalysynth.features import GaussianFeatureNoise, GradientAscentAnomalies


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Linear(torch.nn.Module):
    """sigmoid(w . x + b): BCE(s, 1) has gradient -(1 - s) w, whose direction is -w."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(d, 1)

    def forward(self, x):
        return torch.sigmoid(self.layer(x))


def test_steps_follow_the_normalised_gradient_and_leave_the_discriminator_alone():
    torch.manual_seed(0)
    disc = Linear(16)
    features = torch.randn(2, 10, 16)
    ascent = GradientAscentAnomalies(steps=4, step_size=0.01, project_every=5)
    out = ascent(features, disc, generator=gen(0))
    start = GaussianFeatureNoise(0.015)(features, params=out.params).features
    w = disc.layer.weight.detach()[0]
    expected = start - 4 * 0.01 * w / w.norm()
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=0)
    assert all(p.grad is None for p in disc.parameters())
    assert torch.equal(ascent(features, disc, params=out.params).features, out.features)


def test_projection_puts_the_offsets_into_the_shell():
    torch.manual_seed(1)
    disc = Linear(8)
    features = torch.randn(3, 20, 8)
    out = GradientAscentAnomalies(steps=5, step_size=0.001, radius=0.5)(features, disc, generator=gen(1))
    norms = (out.features - features).norm(dim=-1)
    # tiny noise and steps leave the offsets far inside r = 0.5: all pushed out to exactly r
    torch.testing.assert_close(norms, torch.full_like(norms, 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.strength, torch.full((3,), 0.5), atol=1e-5, rtol=0)


def test_hypersphere_radius_is_the_quantile_of_normal_distances():
    torch.manual_seed(2)
    disc = Linear(8)
    features = torch.randn(2, 50, 8)
    center = torch.zeros(8)
    out = GradientAscentAnomalies(steps=5, radius_quantile=0.75)(features, disc, generator=gen(2), center=center)
    r = np.quantile(features.norm(dim=-1).flatten().numpy(), 0.75)
    dist = out.features.norm(dim=-1).numpy()
    assert dist.min() >= r - 1e-4 and dist.max() <= 2 * r + 1e-4


def test_zero_steps_is_simplenet_noise_and_bad_arguments_fail():
    features = torch.randn(2, 4, 8)
    plain = GradientAscentAnomalies(steps=0)(features, Linear(8), generator=gen(3))
    assert torch.equal(plain.features, GaussianFeatureNoise(0.015)(features, generator=gen(3)).features)
    with pytest.raises(ValueError, match="steps"):
        GradientAscentAnomalies(steps=-1)
    with pytest.raises(ValueError, match="radius_quantile"):
        GradientAscentAnomalies(radius_quantile=1.5)
    with pytest.raises(ValueError, match="rank 3"):
        GradientAscentAnomalies()(torch.randn(2, 8), Linear(8))

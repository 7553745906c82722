"""The hybrid loss against a direct computation of the Gaussian terms."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from anomalysynth.diffusion.losses import (
    DiffusionSchedule,
    discretized_gaussian_log_likelihood,
    gaussian_kl,
    hybrid_loss,
)


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    lv1, lv2 = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    torch.testing.assert_close(gaussian_kl(m1, lv1, m2, lv2), expected)


def test_discretized_likelihood_matches_exact_normal_bins():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0], dtype=torch.float64)
    means = torch.tensor([-0.9, -0.45, 0.1, 0.3, 0.8], dtype=torch.float64)
    log_scales = torch.full_like(x, math.log(0.1))
    normal = Normal(means, log_scales.exp())
    upper, lower = normal.cdf(x + 1 / 255), normal.cdf(x - 1 / 255)
    exact = torch.where(x < -0.999, upper.log(), torch.where(x > 0.999, (1 - lower).log(), (upper - lower).log()))
    # IDDPM uses the tanh approximation of the normal CDF (error ~1e-4 in probability)
    torch.testing.assert_close(discretized_gaussian_log_likelihood(x, means, log_scales), exact, atol=2e-3, rtol=2e-3)


def _direct(model_output, x0, x_t, t, noise, betas):
    """Textbook IDDPM terms, float64, one sample at a time."""
    alphas = 1 - betas
    out = []
    for i in range(x0.shape[0]):
        ti = int(t[i])
        abar = torch.prod(alphas[: ti + 1])
        abar_prev = torch.prod(alphas[:ti]) if ti > 0 else torch.tensor(1.0, dtype=torch.float64)
        eps, v = model_output[i, :3], model_output[i, 3:]
        mse = ((noise[i] - eps) ** 2).mean()
        x0_hat = (x_t[i] - (1 - abar).sqrt() * eps) / abar.sqrt()
        c0 = abar_prev.sqrt() * betas[ti] / (1 - abar)
        ct = alphas[ti].sqrt() * (1 - abar_prev) / (1 - abar)
        true_mean, model_mean = c0 * x0[i] + ct * x_t[i], c0 * x0_hat + ct * x_t[i]
        # beta~ at t, clipped at t = 0 to its t = 1 value as IDDPM
        tt = max(ti, 1)
        beta_tilde = betas[tt] * (1 - torch.prod(alphas[:tt])) / (1 - torch.prod(alphas[: tt + 1]))
        frac = (v + 1) / 2
        model_var = torch.exp(frac * betas[ti].log() + (1 - frac) * beta_tilde.log())
        if ti == 0:
            nll = -discretized_gaussian_log_likelihood(x0[i], model_mean, 0.5 * model_var.log())
            vlb = nll.mean() / math.log(2)
        else:
            kl = kl_divergence(Normal(true_mean, beta_tilde.sqrt()), Normal(model_mean, model_var.sqrt()))
            vlb = kl.mean() / math.log(2)
        out.append((mse, vlb))
    return out


def test_hybrid_loss_equals_direct_gaussian_terms():
    g = torch.Generator().manual_seed(1)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    schedule = DiffusionSchedule(betas)
    x0 = torch.rand(4, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 500, 999])
    abar = torch.cumprod(1 - betas, 0)[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    model_output = torch.cat(
        [
            noise + 0.3 * torch.randn(noise.shape, generator=g, dtype=torch.float64),
            torch.rand(4, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1,
        ],
        1,
    )
    terms = hybrid_loss(model_output, x0, noise, x_t, t, schedule, vlb_weight=0.001)
    direct = _direct(model_output, x0, x_t, t, noise, betas)
    mse = torch.stack([m for m, _ in direct]).mean()
    vlb = torch.stack([v for _, v in direct]).mean()
    torch.testing.assert_close(terms.mse, mse)
    torch.testing.assert_close(terms.vlb, vlb)
    # lambda * T * L_t with T = 1000, lambda = 0.001: the vlb term enters with weight 1
    torch.testing.assert_close(terms.loss, mse + vlb)


def test_mean_gradient_is_stopped_inside_the_vlb():
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 4, 4, generator=g)
    t = torch.tensor([10, 300])
    schedule = DiffusionSchedule(torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    abar = torch.cumprod(1 - schedule.betas, 0)[t].view(-1, 1, 1, 1).float()
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    out = torch.randn(2, 6, 4, 4, generator=g, requires_grad=True)
    hybrid_loss(out, x0, noise, x_t, t, schedule).vlb.backward()
    assert out.grad is not None
    assert torch.count_nonzero(out.grad[:, :3]) == 0  # the mean (noise channels) gets nothing from L_vlb
    assert torch.count_nonzero(out.grad[:, 3:]) > 0  # the variance does


def test_hybrid_loss_needs_variance_channels():
    x = torch.zeros(1, 3, 4, 4)
    schedule = DiffusionSchedule(torch.linspace(1e-4, 0.02, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="6 channels"):
        hybrid_loss(torch.zeros(1, 3, 4, 4), x, x, x, torch.tensor([1]), schedule)

"""IDDPM's hybrid loss (Nichol & Dhariwal, 2021): ``L_simple + lambda * L_vlb``.

The model predicts the noise ``eps`` and, in a second set of channels, ``v`` in
[-1, 1] that interpolates the log variance between the posterior variance
``beta~_t`` and ``beta_t``:  ``log Sigma = frac log beta_t + (1 - frac) log beta~_t``
with ``frac = (v + 1) / 2`` (diffusers' ``variance_type="learned_range"``).

``L_vlb`` sums ``L_0 .. L_{T-1}``; a uniformly drawn ``t`` estimates it as
``T * L_t``, so ``lambda * L_vlb`` with ``lambda = 0.001`` and ``T = 1000`` is
``L_t`` itself, as in IDDPM's code. The mean's gradient is stopped inside ``L_vlb``
so the variance term trains only the variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DiffusionSchedule", "HybridLoss", "gaussian_kl", "discretized_gaussian_log_likelihood", "hybrid_loss"]


def gaussian_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def discretized_gaussian_log_likelihood(x: Tensor, means: Tensor, log_scales: Tensor) -> Tensor:
    """Log-likelihood (nats) of 8-bit images ``x`` in [-1, 1] under a Gaussian
    discretised into 256 bins of width 2/255, the edge bins open (IDDPM's decoder)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(
        x < -0.999,
        log_cdf_plus,
        torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))),
    )


@dataclass
class DiffusionSchedule:
    """The forward-process tensors (float64, length T) of a linear-beta DDPM."""

    betas: Tensor

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod: Tensor) -> DiffusionSchedule:
        ac = alphas_cumprod.double()
        prev = torch.cat([ac.new_ones(1), ac[:-1]])
        return cls(1.0 - ac / prev)

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.numel())

    def tensors(self) -> dict[str, Tensor]:
        betas = self.betas.double()
        alphas = 1.0 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
        return {
            "sqrt_ac": ac.sqrt(),
            "sqrt_one_minus_ac": (1.0 - ac).sqrt(),
            "log_beta": betas.log(),
            # IDDPM clips the t = 0 posterior variance (which is 0) to the t = 1 value
            "post_log_var": torch.cat([post_var[1:2], post_var[1:]]).log(),
            "post_coef_x0": betas * ac_prev.sqrt() / (1.0 - ac),
            "post_coef_xt": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
        }


@dataclass
class HybridLoss:
    """The two terms of the hybrid loss and their weighted sum, each a scalar."""

    loss: Tensor
    mse: Tensor
    vlb: Tensor


def hybrid_loss(
    model_output: Tensor,
    x0: Tensor,
    noise: Tensor,
    x_t: Tensor,
    t: Tensor,
    schedule: DiffusionSchedule | dict[str, Tensor],
    vlb_weight: float = 0.001,
) -> HybridLoss:
    """IDDPM's ``L_simple + vlb_weight * T * L_t`` for a batch.

    Args:
        model_output: (B, 2C, H, W): predicted noise, then the variance values ``v``.
        x0: (B, C, H, W) clean images in [-1, 1].
        noise: the noise used to make ``x_t``.
        x_t: the noised images.
        t: (B,) integer timesteps.
        schedule: a :class:`DiffusionSchedule` or its ``tensors()``.
        vlb_weight: lambda; 0.001 as IDDPM.
    """
    channels = x0.shape[1]
    if model_output.shape[1] != 2 * channels:
        raise ValueError(
            f"The hybrid loss needs a learned-variance model output with {2 * channels} channels "
            f"(noise and variance); got {model_output.shape[1]}."
        )
    tensors = schedule.tensors() if isinstance(schedule, DiffusionSchedule) else schedule
    num_timesteps = tensors["log_beta"].numel()
    eps, v = model_output.split(channels, dim=1)
    mse = (noise - eps).pow(2).flatten(1).mean(1)

    def at(name: str) -> Tensor:
        return tensors[name].to(x0.device)[t].to(x0.dtype).view(-1, 1, 1, 1)

    # the model's mean from the detached noise prediction (stop-gradient), its learned variance
    eps_frozen = eps.detach()
    x0_pred = (x_t - at("sqrt_one_minus_ac") * eps_frozen) / at("sqrt_ac")
    model_mean = at("post_coef_x0") * x0_pred + at("post_coef_xt") * x_t
    frac = (v + 1.0) / 2.0
    model_log_var = frac * at("log_beta") + (1.0 - frac) * at("post_log_var")
    true_mean = at("post_coef_x0") * x0 + at("post_coef_xt") * x_t
    true_log_var = at("post_log_var")
    kl = gaussian_kl(true_mean, true_log_var.expand_as(true_mean), model_mean, model_log_var)
    kl = kl.flatten(1).mean(1) / math.log(2.0)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_log_var)
    nll = nll.flatten(1).mean(1) / math.log(2.0)
    vlb = torch.where(t == 0, nll, kl)
    loss = mse + vlb_weight * num_timesteps * vlb
    return HybridLoss(loss.mean(), mse.mean(), vlb.mean())

"""SDAS: Strength-controllable Diffusion Anomaly Synthesis (RealNet, Zhang et al. 2024).

Ancestral sampling from a DDPM with learned variance where every reverse step but
the last draws ``x_{t-1} = mu + sqrt(1 + s) * sigma_t * z``: ``s = 0`` gives normal
images, larger ``s`` pushes samples off the normal manifold. The chain is respaced
to ``num_steps`` strided steps (IDDPM respacing, RealNet's "ddim20"). The DDIM
variant (paper Alg. S1) takes the deterministic DDIM step and adds ``N(0, s Sigma)``;
like RealNet's reference (and improved-diffusion), its direction term uses the noise
re-derived from the clipped ``x0`` (diffusers' ``use_clipped_model_output=True``).

The sampler is a ``torch.nn.Module`` whose network is a submodule, so ``.to(device)``
(and a parent module's ``.to``, ``state_dict``) reach it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.diffusion.networks import ema_networks_from_checkpoint

__all__ = ["SDASSampler", "load_diffusion", "has_learned_variance"]

Generators = torch.Generator | Sequence[torch.Generator] | None


def has_learned_variance(unet: UNet2DModel, scheduler: DDPMScheduler) -> bool:
    """Whether the model predicts IDDPM's variance (2C output channels, learned range)."""
    return unet.config.out_channels == 2 * unet.config.in_channels and scheduler.config.variance_type in (
        "learned_range",
        "learned",
    )


def load_diffusion(path: str | Path) -> tuple[UNet2DModel, DDPMScheduler]:
    """Load a normal-image diffusion model from a local path.

    ``path`` is a folder in diffusers' layout (``unet/`` and ``scheduler/``, as
    :meth:`NormalImageDiffusion.save_pretrained` writes) or a Lightning checkpoint
    (``.ckpt``) of :class:`NormalImageDiffusion`, whose EMA weights are used.
    """
    path = Path(path)
    if path.is_dir():
        if not (path / "unet").is_dir() or not (path / "scheduler").is_dir():
            raise ValueError(
                f"{str(path)!r} is not a diffusion folder: expected 'unet/' and 'scheduler/' subfolders "
                "(NormalImageDiffusion.save_pretrained writes them), or pass a .ckpt file."
            )
        return UNet2DModel.from_pretrained(path / "unet"), DDPMScheduler.from_pretrained(path / "scheduler")
    if path.is_file():
        return ema_networks_from_checkpoint(path)
    raise ValueError(
        f"Diffusion checkpoint {str(path)!r} does not exist; pass a .ckpt file or a save_pretrained folder."
    )


class SDASSampler(torch.nn.Module):
    """Strength-controlled sampling from a normal-image diffusion model.

    A module holding the network (``unet``, a registered submodule: ``.to(device)``
    moves it and ``state_dict`` contains it); the network always runs in eval mode.
    Calling the sampler is :meth:`sample`.

    Args:
        unet: a diffusers ``UNet2DModel`` predicting noise (and, for SDAS, the variance).
        scheduler: its ``DDPMScheduler`` (``variance_type="learned_range"``).
        num_steps: respaced number of reverse steps.
        method: ``"ddpm"`` (ancestral, the paper's default) or ``"ddim"`` (Alg. S1; with
            ``clip_sample`` the direction term uses the noise re-derived from the clipped
            ``x0``, as RealNet's code does: diffusers' ``use_clipped_model_output=True``).
        fixed_variance: sample a model without learned variance with the fixed
            posterior variance ``beta~_t`` instead of refusing it.

    Example:
        >>> unet, scheduler = load_diffusion("results/sdas_diffusion/pretrained")  # doctest: +SKIP
        >>> images = SDASSampler(unet, scheduler).sample(8, strength=0.15)  # doctest: +SKIP
    """

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: DDPMScheduler,
        num_steps: int = 20,
        method: str = "ddpm",
        fixed_variance: bool = False,
    ) -> None:
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"`method` must be 'ddpm' or 'ddim'; got {method!r}.")
        if not 1 <= num_steps <= scheduler.config.num_train_timesteps:
            raise ValueError(f"`num_steps` must lie in [1, {scheduler.config.num_train_timesteps}]; got {num_steps}.")
        super().__init__()
        self.learned = has_learned_variance(unet, scheduler)
        if not self.learned and not fixed_variance:
            raise ValueError(
                "This diffusion model has no learned variance (out_channels="
                f"{unet.config.out_channels} for {unet.config.in_channels} image channels, variance_type="
                f"{scheduler.config.variance_type!r}); SDAS scales IDDPM's learned variance, so train with "
                "NormalImageDiffusion (learned_range), or pass fixed_variance=True to use the fixed "
                "posterior variance instead."
            )
        self.unet = unet.eval()
        self.scheduler = DDPMScheduler.from_config(scheduler.config)
        self.scheduler.set_timesteps(num_steps)
        self.num_steps = num_steps
        self.method = method
        self.channels = int(unet.config.in_channels)

    def train(self, mode: bool = True) -> SDASSampler:
        """Sets the flag only: the network stays in eval mode (sampling never uses dropout)."""
        super().train(mode)
        self.unet.eval()
        return self

    def forward(self, num_images: int, strength: float | Tensor = 0.0, generator: Generators = None) -> Tensor:
        """Same as :meth:`sample`."""
        return self.sample(num_images, strength, generator)

    # -- one reverse step -------------------------------------------------------------------
    def _split(self, model_output: Tensor, sample: Tensor) -> tuple[Tensor, Tensor | None]:
        if model_output.shape[1] == 2 * sample.shape[1]:
            eps, v = torch.split(model_output, sample.shape[1], dim=1)
            return eps, (v if self.learned else None)
        return model_output, None

    def _alphas(self, t: int) -> tuple[Tensor, Tensor]:
        prev_t = int(self.scheduler.previous_timestep(t))
        alpha_prod_t = self.scheduler.alphas_cumprod[t]
        alpha_prod_t_prev = self.scheduler.alphas_cumprod[prev_t] if prev_t >= 0 else self.scheduler.one
        return alpha_prod_t, alpha_prod_t_prev

    def _log_variance(self, t: int, v: Tensor | None) -> Tensor:
        """log Sigma_t of the respaced chain: learned range between beta~_t and beta_t."""
        alpha_prod_t, alpha_prod_t_prev = self._alphas(t)
        current_beta_t = 1 - alpha_prod_t / alpha_prod_t_prev
        variance = torch.clamp((1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * current_beta_t, min=1e-20)
        min_log = torch.log(variance)
        if v is None:
            return min_log
        max_log = torch.log(current_beta_t)
        frac = (v + 1) / 2
        return frac * max_log + (1 - frac) * min_log

    def step(
        self, model_output: Tensor, t: int, sample: Tensor, strength: float | Tensor = 0.0, generator: Generators = None
    ) -> Tensor:
        """One reverse step ``x_t -> x_{t-1}`` with strength ``s`` (float or (B,) tensor)."""
        t = int(t)
        eps, v = self._split(model_output, sample)
        alpha_prod_t, alpha_prod_t_prev = self._alphas(t)
        beta_prod_t = 1 - alpha_prod_t
        x0 = (sample - beta_prod_t ** (0.5) * eps) / alpha_prod_t ** (0.5)
        cfg = self.scheduler.config
        if cfg.clip_sample:
            x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
        if self.method == "ddpm":
            beta_prod_t_prev = 1 - alpha_prod_t_prev
            current_alpha_t = alpha_prod_t / alpha_prod_t_prev
            current_beta_t = 1 - current_alpha_t
            x0_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
            xt_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
            mean = x0_coeff * x0 + xt_coeff * sample
            noise_scale = _per_sample(strength, sample, lambda s: torch.sqrt(1 + s))
        else:
            std_dev_t = 0.0 * ((1 - alpha_prod_t_prev) / beta_prod_t * (1 - alpha_prod_t / alpha_prod_t_prev)) ** 0.5
            # the noise implied by the (clipped) x0, as RealNet's ddim_sample re-derives it
            eps_x0 = (sample - alpha_prod_t ** (0.5) * x0) / beta_prod_t ** (0.5)
            direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** (0.5) * eps_x0
            mean = alpha_prod_t_prev ** (0.5) * x0 + direction
            noise_scale = _per_sample(strength, sample, torch.sqrt)
        if int(self.scheduler.previous_timestep(t)) < 0:  # the last step adds no noise
            return mean
        z = randn_tensor(eps.shape, generator=_generator_arg(generator), device=eps.device, dtype=eps.dtype)
        sigma_z = torch.exp(0.5 * self._log_variance(t, v)) * z
        return mean + noise_scale * sigma_z

    # -- the whole chain ----------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        num_images: int,
        strength: float | Tensor = 0.0,
        generator: Generators = None,
        progress: bool = False,
    ) -> Tensor:
        """(num_images, C, H, W) samples in [0, 1].

        ``generator``: one generator, or one per image (image i then equals the
        single-image call with generator i, whatever the batch).
        """
        if isinstance(generator, Sequence) and len(generator) != num_images:
            raise ValueError(f"Got {len(generator)} generators for {num_images} images; pass one per image.")
        strength = _check_strength(strength, num_images)
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        device, dtype = self.unet.device, self.unet.dtype
        x = randn_tensor(
            (num_images, self.channels, h, w), generator=_generator_arg(generator), device=device, dtype=dtype
        )
        if isinstance(strength, Tensor):
            strength = strength.to(device, dtype)
        for t in tqdm(self.scheduler.timesteps, desc="SDAS sampling", disable=not progress, leave=False):
            out = self.unet(x, t).sample
            x = self.step(out, int(t), x, strength, generator)
        return ((x + 1) / 2).clamp(0, 1)


def _generator_arg(generator: Generators) -> torch.Generator | list[torch.Generator] | None:
    return list(generator) if isinstance(generator, Sequence) else generator


def _check_strength(strength: float | Tensor, num_images: int) -> float | Tensor:
    if isinstance(strength, Tensor):
        if strength.shape not in ((), (num_images,)):
            raise ValueError(
                f"`strength` must be a float or a ({num_images},) tensor; got shape {tuple(strength.shape)}."
            )
        if (strength < 0).any():
            raise ValueError("`strength` must be >= 0.")
        return strength
    if not (isinstance(strength, (int, float)) and math.isfinite(strength) and strength >= 0):
        raise ValueError(f"`strength` must be a finite float >= 0; got {strength!r}.")
    return float(strength)


def _per_sample(strength: float | Tensor, like: Tensor, fn) -> Tensor | float:  # type: ignore[no-untyped-def]
    if isinstance(strength, Tensor):
        s = strength.to(like.device, like.dtype)
        s = s.view(-1, 1, 1, 1) if s.dim() == 1 else s
        return fn(s)
    return float(fn(torch.tensor(float(strength), dtype=torch.float64)))

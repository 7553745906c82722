"""The networks of a normal-image diffusion model, and reading them back from a checkpoint.

Both :class:`~anomalysynth.diffusion.NormalImageDiffusion` (which trains them) and
:func:`~anomalysynth.diffusion.load_diffusion` (which hands them to the SDAS sampler)
build the same ``UNet2DModel`` and ``DDPMScheduler`` from the same arguments; they
live here so that neither of the two modules needs the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel

__all__ = ["build_networks", "ema_networks_from_checkpoint", "read_checkpoint"]


def build_networks(
    image_size: int = 32,
    channels: int = 3,
    block_out_channels: Sequence[int] = (32, 64, 128),
    layers_per_block: int = 1,
    attention_levels: Sequence[bool] = (False, False, True),
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> tuple[UNet2DModel, DDPMScheduler]:
    """IDDPM's networks: a ``UNet2DModel`` with twice the image channels out (noise and
    variance) and a linear-beta ``DDPMScheduler(variance_type="learned_range")``.

    The defaults are :class:`~anomalysynth.diffusion.NormalImageDiffusion`'s.
    """
    if len(attention_levels) != len(block_out_channels):
        raise ValueError(
            f"`attention_levels` needs one flag per level ({len(block_out_channels)}); got {len(attention_levels)}."
        )
    if image_size % (2 ** (len(block_out_channels) - 1)):
        raise ValueError(
            f"`image_size` {image_size} must be divisible by {2 ** (len(block_out_channels) - 1)} "
            f"for {len(block_out_channels)} UNet levels."
        )
    unet = UNet2DModel(
        sample_size=image_size,
        in_channels=channels,
        out_channels=2 * channels,
        block_out_channels=tuple(block_out_channels),
        layers_per_block=layers_per_block,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention_levels),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention_levels)),
        norm_num_groups=min(32, min(block_out_channels)),
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=beta_start,
        beta_end=beta_end,
        beta_schedule="linear",
        variance_type="learned_range",
        clip_sample=True,
    )
    return unet, scheduler


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A ``NormalImageDiffusion`` Lightning checkpoint, loaded with ``weights_only=True``."""
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} is not a NormalImageDiffusion checkpoint (no hyper_parameters/state_dict).")
    return checkpoint


def ema_networks_from_checkpoint(path: str | Path) -> tuple[UNet2DModel, DDPMScheduler]:
    """The EMA U-Net (in eval mode, frozen) and the scheduler of a ``NormalImageDiffusion`` checkpoint."""
    checkpoint = read_checkpoint(path)
    accepted = inspect.signature(build_networks).parameters
    # the module's other hyperparameters (lr, flips, ...) and LightningCLI's ``_class_path`` do not shape the networks
    unet, scheduler = build_networks(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted})
    prefix = "ema_unet."
    unet.load_state_dict({k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    return unet.requires_grad_(False).eval(), scheduler

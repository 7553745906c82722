"""A DDPM with learned variance (IDDPM) trained on normal images: SDAS's model."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.diffusion.losses import DiffusionSchedule, hybrid_loss
from anomalysynth.diffusion.networks import build_networks, read_checkpoint
from anomalysynth.diffusion.sampler import SDASSampler

__all__ = ["NormalImageDiffusion", "batch_images"]


def batch_images(batch: Any) -> Tensor:
    """The (B, C, H, W) image tensor of a plain tensor, a dict or an anomalib batch."""
    if isinstance(batch, Tensor):
        images = batch
    elif isinstance(batch, dict) and "image" in batch:
        images = batch["image"]
    elif hasattr(batch, "image"):
        images = batch.image
    elif isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], Tensor):
        images = batch[0]
    else:
        raise ValueError(
            "Expected a batch with images (a tensor, a dict with 'image' or an anomalib batch); "
            f"got {type(batch).__name__}."
        )
    if images.dim() != 4:
        raise ValueError(f"Expected (B, C, H, W) images; got shape {tuple(images.shape)}.")
    return images


class NormalImageDiffusion(pl.LightningModule):
    """IDDPM on normal images: a diffusers ``UNet2DModel`` with twice the image
    channels out (noise and variance), a ``DDPMScheduler(variance_type="learned_range")``,
    the hybrid loss ``L_simple + 0.001 L_vlb``, EMA weights.

    Images arrive in [0, 1] (any anomalib or plain datamodule), are resized to
    ``image_size``, randomly flipped and mapped to [-1, 1]. Use the trainer's
    ``gradient_clip_val`` for clipping (the configs set 1.0) and
    :class:`~anomalysynth.callbacks.DiffusionSampleGrid` for sample grids.

    Args:
        image_size: training and sampling resolution.
        channels: image channels (3 or 1).
        block_out_channels: UNet widths per resolution level.
        layers_per_block: residual blocks per level.
        attention_levels: per level, whether its blocks use self-attention.
        num_train_timesteps, beta_start, beta_end: the linear-beta forward process.
        vlb_weight: lambda of the hybrid loss (IDDPM: 0.001).
        lr: AdamW learning rate.
        ema_decay: EMA decay (warmed up as ``min(decay, (1 + n) / (10 + n))``).
        horizontal_flip, vertical_flip: training augmentation.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        block_out_channels: Sequence[int] = (32, 64, 128),
        layers_per_block: int = 1,
        attention_levels: Sequence[bool] = (False, False, True),
        num_train_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        vlb_weight: float = 0.001,
        lr: float = 2e-4,
        ema_decay: float = 0.999,
        horizontal_flip: bool = True,
        vertical_flip: bool = False,
    ) -> None:
        super().__init__()
        self.unet, self.scheduler = build_networks(
            image_size,
            channels,
            block_out_channels,
            layers_per_block,
            attention_levels,
            num_train_timesteps,
            beta_start,
            beta_end,
        )
        self.save_hyperparameters()
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        self.schedule = DiffusionSchedule.from_alphas_cumprod(self.scheduler.alphas_cumprod).tensors()
        self.ema_updates = 0

    # -- training ---------------------------------------------------------------------------------
    def prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images -> [-1, 1] at ``image_size`` (flipped at random when training)."""
        size = self.hparams["image_size"]
        if images.shape[1] != self.hparams["channels"]:
            raise ValueError(f"Expected {self.hparams['channels']}-channel images; got {images.shape[1]}.")
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.training:
            if self.hparams["horizontal_flip"]:
                flip = torch.rand(images.shape[0], device=images.device) < 0.5
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
            if self.hparams["vertical_flip"]:
                flip = torch.rand(images.shape[0], device=images.device) < 0.5
                images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-2), images)
        return images.clamp(0, 1) * 2 - 1

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x0 = self.prepare(batch_images(batch))
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.scheduler.add_noise(x0, noise, t)
        out = self.unet(x_t, t).sample
        terms = hybrid_loss(out, x0, noise, x_t, t, self.schedule, self.hparams["vlb_weight"])
        self.log_dict(
            {"train_loss": terms.loss, "train_mse": terms.mse, "train_vlb": terms.vlb},
            prog_bar=True,
            batch_size=x0.shape[0],
        )
        return terms.loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.ema_updates += 1
        n = self.ema_updates
        decay = min(self.hparams["ema_decay"], (1 + n) / (10 + n))
        ema = list(self.ema_unet.parameters())
        torch._foreach_lerp_(ema, [p.detach() for p in self.unet.parameters()], 1.0 - decay)
        for b_ema, b in zip(self.ema_unet.buffers(), self.unet.buffers(), strict=True):
            b_ema.copy_(b)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.unet.parameters(), lr=self.hparams["lr"], weight_decay=0.0)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ema_updates"] = self.ema_updates

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.ema_updates = int(checkpoint.get("ema_updates", 0))

    # -- sampling and export ------------------------------------------------------------------------
    def sampler(self, num_steps: int = 20, method: str = "ddpm", ema: bool = True) -> SDASSampler:
        """An :class:`~anomalysynth.diffusion.SDASSampler` on the (EMA) weights."""
        return SDASSampler(self.ema_unet if ema else self.unet, self.scheduler, num_steps=num_steps, method=method)

    def save_pretrained(self, folder: str | Path, ema: bool = True) -> Path:
        """Write ``unet/`` (EMA weights by default) and ``scheduler/`` in diffusers' layout."""
        folder = Path(folder)
        (self.ema_unet if ema else self.unet).save_pretrained(folder / "unet")
        self.scheduler.save_pretrained(folder / "scheduler")
        return folder

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> NormalImageDiffusion:
        """Load a Lightning checkpoint with ``weights_only=True``."""
        checkpoint = read_checkpoint(path, map_location)
        accepted = inspect.signature(cls.__init__).parameters
        # LightningCLI adds bookkeeping keys such as ``_class_path`` to the hyperparameters
        module = cls(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted})
        module.load_state_dict(checkpoint["state_dict"])
        module.ema_updates = int(checkpoint.get("ema_updates", 0))
        return module.eval()

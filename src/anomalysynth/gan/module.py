"""``AnomalyHybridGAN``: trains AnomalyHybrid's generator on normal images, without annotations.

Each training image gives a triplet (RGB, depth, edge). Two independent draws of
:class:`~anomalysynth.gan.augment.TripletAugmentation` make the input and the
target; the generator sees the input's colour image and the target's depth and
edges and must produce the target's colour image (Zhao 2025, Sec. 3.2):

    out_d, out_e = G(C_in = aug1(RGB), D = aug2(depth), E = edges(aug2(RGB)))
    L_G = sum over out in (out_d, out_e) of
          w_p * L_perc(out, aug2(RGB)) + w_gan * L_gan(D(cond, out)) + w_fm * L_fm
    L_D = L_gan(D(cond, aug2(RGB)), real) + L_gan(D(cond, out.detach()), fake)

with ``cond = [D, E]``. Edges are recomputed on the augmented target (binary Canny
stays binary); depth is warped with the image. Training randomness comes from
``anomalysynth.seeding`` keyed by ``(seed, step, sample)``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.gan.augment import TripletAugmentation
from anomalysynth.gan.checkpoint import build_conditions, match_channels, read_checkpoint
from anomalysynth.gan.discriminator import MultiscaleDiscriminator
from anomalysynth.gan.generator import AnomalyHybridGenerator, DecoderOutput
from anomalysynth.gan.losses import GAN_MODES, feature_matching_loss, gan_loss
from anomalysynth.gan.perceptual import PerceptualLoss
from anomalysynth.seeding import keyed_generators

__all__ = ["AnomalyHybridGAN", "TrainingPair", "batch_images_and_paths"]


class TrainingPair:
    """The tensors of one training step (all (B, ., S, S) in [0, 1])."""

    def __init__(self, content: Tensor, depth: Tensor, edge: Tensor, target: Tensor) -> None:
        self.content, self.depth, self.edge, self.target = content, depth, edge, target

    @property
    def condition(self) -> Tensor:
        return torch.cat([self.depth, self.edge], dim=1)


class AnomalyHybridGAN(pl.LightningModule):
    """AnomalyHybrid's conditional GAN (generator, multi-scale discriminator, losses).

    Args:
        image_size: training side (images are resized to it); a multiple of
            ``2 ** num_downsampling``.
        channels: image channels (3, or 1 for grey data; inputs are converted).
        generator_width, num_downsampling, num_resnet_blocks: see
            :class:`~anomalysynth.gan.generator.AnomalyHybridGenerator`.
        discriminator_width, discriminator_layers, discriminator_scales: see
            :class:`~anomalysynth.gan.discriminator.MultiscaleDiscriminator`.
        perceptual_backbone, perceptual_weights: see
            :class:`~anomalysynth.gan.perceptual.PerceptualLoss` (default: offline
            EfficientNet-Lite0; ``"vgg19"`` with a local weights file is the paper's).
        perceptual_weight, gan_weight, feature_matching_weight: loss weights (pix2pixHD: 10, 1, 10).
        gan_mode: ``"lsgan"`` (pix2pixHD) or ``"hinge"``.
        edge_source, depth_source, edge_model, depth_model, depth_dir, depth_is_distance,
        canny_low, canny_high, pseudo_depth_sigma: the conditions, see
            :class:`~anomalysynth.gan.conditions.ConditionExtractor`; ``depth_source`` must be chosen.
        flip_probability, scale, tps_shift: the training augmentation, see
            :class:`~anomalysynth.gan.augment.TripletAugmentation`.
        lr, beta1, beta2: Adam for both networks (pix2pixHD: 2e-4, 0.5, 0.999).
        seed: base seed of the augmentation draws.
    """

    def __init__(
        self,
        image_size: int = 64,
        channels: int = 3,
        generator_width: int = 32,
        num_downsampling: int = 3,
        num_resnet_blocks: int = 6,
        discriminator_width: int = 32,
        discriminator_layers: int = 3,
        discriminator_scales: int = 2,
        perceptual_backbone: str = "efficientnet_lite0",
        perceptual_weights: str | None = None,
        perceptual_weight: float = 10.0,
        gan_weight: float = 1.0,
        feature_matching_weight: float = 10.0,
        gan_mode: str = "lsgan",
        edge_source: str = "canny",
        depth_source: str | None = None,
        edge_model: str | None = None,
        depth_model: str | None = None,
        depth_dir: str | None = None,
        depth_is_distance: bool = False,
        canny_low: float = 0.1,
        canny_high: float = 0.2,
        pseudo_depth_sigma: float = 0.01,
        flip_probability: float = 0.5,
        scale: tuple[float, float] = (0.8, 1.0),
        tps_shift: float = 0.15,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"`gan_mode` must be one of {GAN_MODES}; got {gan_mode!r}.")
        if image_size % 2**num_downsampling:
            raise ValueError(
                f"`image_size` {image_size} must be divisible by {2**num_downsampling} "
                f"({num_downsampling} downsamplings)."
            )
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = AnomalyHybridGenerator(channels, generator_width, num_downsampling, num_resnet_blocks)
        self.discriminator = MultiscaleDiscriminator(
            2, channels, discriminator_width, discriminator_layers, discriminator_scales
        )
        self.conditions = build_conditions(self.hparams)
        self.perceptual = PerceptualLoss(perceptual_backbone, perceptual_weights)
        self.augmentation = TripletAugmentation(flip_probability, tuple(scale), tps_shift)  # type: ignore[arg-type]

    # -- data -------------------------------------------------------------------------------------
    def prepare(self, images: Tensor) -> Tensor:
        """[0, 1] images at ``image_size`` with ``channels`` channels."""
        size = self.hparams["image_size"]
        images = match_channels(images.float(), self.hparams["channels"])
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return images.clamp(0, 1)

    def training_pair(self, batch: Any, step: int) -> TrainingPair:
        """The input/target pair of ``batch`` at training step ``step`` (deterministic in both)."""
        images, paths = batch_images_and_paths(batch)
        images = self.prepare(images)
        c = images.shape[1]
        depth = self.conditions.depth(images, paths)
        stack = torch.cat([images, depth], dim=1)
        seed = self.hparams["seed"]
        b = images.shape[0]
        gens_in = keyed_generators(seed, [f"input:{step}:{i}" for i in range(b)])
        gens_target = keyed_generators(seed, [f"target:{step}:{i}" for i in range(b)])
        source = self.augmentation.apply(stack, self.augmentation.sample(gens_in))
        target = self.augmentation.apply(stack, self.augmentation.sample(gens_target))
        target_rgb = target[:, :c].clamp(0, 1)
        edge = self.conditions.edges(target_rgb)
        return TrainingPair(source[:, :c].clamp(0, 1), target[:, c:].clamp(0, 1), edge, target_rgb)

    # -- training ---------------------------------------------------------------------------------
    def generator_loss(self, pair: TrainingPair, outputs: tuple[DecoderOutput, ...]) -> dict[str, Tensor]:
        """Perceptual + GAN + feature-matching terms, summed over both decoders."""
        hp = self.hparams
        cond = pair.condition
        real_features = self.discriminator(cond, pair.target) if hp["feature_matching_weight"] > 0 else None
        terms: dict[str, Tensor] = {}
        for name, out in zip(("depth", "edge"), outputs, strict=True):
            fake = self.discriminator(cond, out.image)
            terms[f"perceptual_{name}"] = self.perceptual(out.image, pair.target)
            terms[f"gan_{name}"] = gan_loss(fake, True, hp["gan_mode"], for_discriminator=False)
            if real_features is not None:
                terms[f"fm_{name}"] = feature_matching_loss(fake, real_features)
        total = sum(
            (
                hp["perceptual_weight"] * v
                if k.startswith("perceptual")
                else hp["gan_weight"] * v
                if k.startswith("gan")
                else hp["feature_matching_weight"] * v
            )
            for k, v in terms.items()
        )
        terms["loss_g"] = total  # type: ignore[assignment]
        return terms

    def discriminator_loss(self, pair: TrainingPair, outputs: tuple[DecoderOutput, ...]) -> Tensor:
        mode = self.hparams["gan_mode"]
        cond = pair.condition
        real = gan_loss(self.discriminator(cond, pair.target), True, mode)
        fakes = [gan_loss(self.discriminator(cond, out.image.detach()), False, mode) for out in outputs]
        return real + torch.stack(fakes).mean()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        opt_g, opt_d = self.optimizers()  # type: ignore[misc, attr-defined]
        pair = self.training_pair(batch, self.global_step)
        outputs = self.generator(pair.content, pair.depth, pair.edge)
        # generator step (the discriminator is not updated by it)
        self.discriminator.requires_grad_(False)
        terms = self.generator_loss(pair, outputs)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(terms["loss_g"])
        opt_g.step()
        self.discriminator.requires_grad_(True)
        # discriminator step
        loss_d = self.discriminator_loss(pair, outputs)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()
        b = pair.target.shape[0]
        self.log_dict({f"train_{k}": v.detach() for k, v in terms.items() if k != "loss_g"}, batch_size=b)
        self.log("train_loss_d", loss_d.detach(), prog_bar=True, batch_size=b)
        self.log("train_loss_g", terms["loss_g"].detach(), prog_bar=True, batch_size=b)
        return terms["loss_g"].detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        betas = (hp["beta1"], hp["beta2"])
        return [
            torch.optim.Adam(self.generator.parameters(), lr=hp["lr"], betas=betas),
            torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr"], betas=betas),
        ]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the frozen perceptual network is rebuilt from its offline weights; keep checkpoints small
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("perceptual.")]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        own = self.perceptual.state_dict()
        checkpoint["state_dict"].update({f"perceptual.{k}": v for k, v in own.items()})

    # -- loading ------------------------------------------------------------------------------------
    @classmethod
    def load_weights_only(cls, path: str | Path, map_location: str | torch.device = "cpu") -> AnomalyHybridGAN:
        """Rebuild from a Lightning checkpoint read with ``torch.load(weights_only=True)``."""
        checkpoint = read_checkpoint(path, map_location)
        accepted = inspect.signature(cls.__init__).parameters
        module = cls(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted})
        state = dict(checkpoint["state_dict"])
        state.update({f"perceptual.{k}": v for k, v in module.perceptual.state_dict().items()})
        module.load_state_dict(state)
        return module.eval()


def batch_images_and_paths(batch: Any) -> tuple[Tensor, list[str] | None]:
    """(B, C, H, W) images and, when the batch has them, the image paths."""
    paths = None
    if isinstance(batch, Tensor):
        images = batch
    elif isinstance(batch, dict) and "image" in batch:
        images, paths = batch["image"], batch.get("image_path")
    elif hasattr(batch, "image"):
        images, paths = batch.image, getattr(batch, "image_path", None)
    elif isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        images = batch[0]
    else:
        raise ValueError(
            "Expected a batch with images (a tensor, a dict with 'image' or an anomalib batch); "
            f"got {type(batch).__name__}."
        )
    if not isinstance(images, Tensor) or images.dim() != 4:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"Expected (B, C, H, W) images; got {got}.")
    return images, None if paths is None else [str(p) for p in paths]

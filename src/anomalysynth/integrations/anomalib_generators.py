"""Drop-in replacements for the anomaly generators inside anomalib's models.

Each class returns exactly what the generator it replaces returns, so the model's
own ``training_step`` runs unchanged:

* :class:`ImageAnomalyGenerator` replaces ``PerlinAnomalyGenerator`` (DRAEM's
  ``augmenter``, DSR's ``perlin_generator``, GLASS's ``model.augmentor``):
  ``(images) -> (augmented, mask)``, images (B, C, H, W) or (C, H, W) in [0, 1],
  mask (B, 1, H, W) or (1, H, W) float32 with values 0/1.
* :class:`MaskAnomalyGenerator` replaces DSR's ``quantized_anomaly_generator``:
  ``augment_batch(images) -> mask`` (B, 1, H, W) float32 0/1 (DSR makes its
  phase-2 anomalies in its latent space where this mask says).
* :class:`ImageAnomalyHook` synthesizes SuperSimpleNet's training images before its
  feature extractor (a forward pre-hook of the torch model) and hands the masks and
  labels to its supervised path; :class:`FeatureNoiseOff` then stands in for its
  feature-noise generator with the same signature and output format.

The synthesizer is kept out of the model's ``state_dict`` (checkpoints stay loadable
by the unmodified model) and follows the images to their device at every call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from anomalysynth.synth.base import Synthesizer

__all__ = [
    "FeatureNoiseOff",
    "ImageAnomalyGenerator",
    "ImageAnomalyHook",
    "MaskAnomalyGenerator",
    "SynthesizerDraw",
]


class SynthesizerDraw:
    """One synthesizer call as anomalib's generators need it: binary mask, own randomness.

    Args:
        synthesizer: any :class:`~anomalysynth.synth.base.Synthesizer` (``OneOf`` too).
        anomaly_ratio: probability that a sample is made anomalous (replaces the
            generator's own ``probability``).
        seed: ``None`` draws from torch's global generator (so ``seed_everything``
            makes runs reproducible); an int gives the draws their own generator.
        mask_threshold: masks are binarised at this value (anomalib's losses cast
            the mask to class indices); the label follows the binarised mask.
    """

    def __init__(
        self, synthesizer: Synthesizer, anomaly_ratio: float, seed: int | None = None, mask_threshold: float = 0.5
    ) -> None:
        if not isinstance(synthesizer, Synthesizer):
            raise ValueError(f"Expected an anomalysynth Synthesizer; got {type(synthesizer).__name__}.")
        if not 0.0 <= anomaly_ratio <= 1.0:
            raise ValueError(f"`anomaly_ratio` must lie in [0, 1]; got {anomaly_ratio}.")
        if not 0.0 < mask_threshold <= 1.0:
            raise ValueError(f"`mask_threshold` must lie in (0, 1]; got {mask_threshold}.")
        self.synthesizer = synthesizer
        self.anomaly_ratio = float(anomaly_ratio)
        self.seed = seed
        self.mask_threshold = float(mask_threshold)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, C, H, W) images in [0, 1] -> (image, mask (B, 1, H, W) float32 0/1, label (B,) long).

        Pixels where the mask is 0 are returned bit for bit as they came (also when
        they lay slightly outside [0, 1], as after a de-normalisation).
        """
        synth = self.synthesizer.to(images.device)
        with torch.no_grad():
            out = synth(images.detach().float().clamp(0.0, 1.0), self.generator, anomaly_ratio=self.anomaly_ratio)
        mask = (out.mask >= self.mask_threshold).to(torch.float32)
        image = torch.where(mask.bool(), out.image.to(images.dtype), images)
        label = (mask.flatten(1).amax(dim=1) > 0).long()
        return image, mask, label


class ImageAnomalyGenerator(torch.nn.Module):
    """Replaces ``PerlinAnomalyGenerator``: ``(images) -> (augmented, mask)``."""

    draw: SynthesizerDraw

    def __init__(self, draw: SynthesizerDraw) -> None:
        super().__init__()
        object.__setattr__(self, "draw", draw)  # not a submodule: stays out of the state_dict

    def forward(self, img: Tensor) -> tuple[Tensor, Tensor]:
        """Args: img (B, C, H, W) or (C, H, W) in [0, 1]. Returns (augmented, mask) of the same rank."""
        single = img.ndim == 3
        image, mask, _ = self.draw(img.unsqueeze(0) if single else img)
        return (image[0], mask[0]) if single else (image, mask)

    def extra_repr(self) -> str:
        return f"synthesizer={self.draw.synthesizer.name}, anomaly_ratio={self.draw.anomaly_ratio}"


class MaskAnomalyGenerator(torch.nn.Module):
    """Replaces DSR's ``DsrAnomalyGenerator``: ``augment_batch(images) -> mask`` (B, 1, H, W)."""

    draw: SynthesizerDraw

    def __init__(self, draw: SynthesizerDraw) -> None:
        super().__init__()
        object.__setattr__(self, "draw", draw)

    def augment_batch(self, batch: Tensor) -> Tensor:
        """Args: batch (B, C, H, W) in [0, 1]. Returns the synthesizer's binarised masks."""
        return self.draw(batch)[1]

    def forward(self, batch: Tensor) -> Tensor:
        return self.augment_batch(batch)

    def extra_repr(self) -> str:
        return f"synthesizer={self.draw.synthesizer.name}, anomaly_ratio={self.draw.anomaly_ratio}"


class ImageAnomalyHook:
    """Forward pre-hook that synthesizes a model's training images before it sees them.

    Registered on SuperSimpleNet's torch model (``register_forward_pre_hook(...,
    with_kwargs=True)``); in training mode it replaces ``images`` by the synthetic
    images (de-normalised with ``mean``/``std`` first, normalised again after) and
    merges the synthetic masks (B, H, W) and labels (B,) into ``masks``/``labels``.
    """

    def __init__(self, draw: SynthesizerDraw, mean: Tensor | None = None, std: Tensor | None = None) -> None:
        self.draw = draw
        self.mean = None if mean is None else mean.reshape(1, -1, 1, 1)
        self.std = None if std is None else std.reshape(1, -1, 1, 1)

    def __call__(
        self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        if not module.training:
            return None
        kwargs = dict(kwargs)
        if args:  # forward(images, masks=None, labels=None) called positionally
            names = ("images", "masks", "labels")
            kwargs.update(dict(zip(names, args, strict=False)))
            args = ()
        images: Tensor = kwargs["images"]
        raw = images if self.mean is None else images * self.std.to(images) + self.mean.to(images)  # type: ignore[union-attr]
        synthetic, mask, label = self.draw(raw)
        if self.mean is not None:
            # the model sees its own normalised pixels wherever nothing was synthesized
            synthetic = torch.where(mask.bool(), (synthetic - self.mean.to(images)) / self.std.to(images), images)  # type: ignore[union-attr]
        masks = kwargs.get("masks")
        labels = kwargs.get("labels")
        new_masks = mask[:, 0]
        kwargs["images"] = synthetic
        kwargs["masks"] = new_masks if masks is None else torch.maximum(masks.to(new_masks), new_masks)
        new_labels = label.to(images.device)
        kwargs["labels"] = new_labels if labels is None else torch.maximum(labels.to(new_labels), new_labels)
        return args, kwargs


class FeatureNoiseOff(torch.nn.Module):
    """Stands in for SuperSimpleNet's ``AnomalyGenerator`` when the anomalies come from images.

    Same signature and output format ``(perturbed_feat, perturbed_adapt, masks,
    labels)``: the features unchanged, masks (B, 1, h, w) and labels (B,) as float32
    0/1. SuperSimpleNet's own generator returns the batch twice (2B), each copy with
    its own noise; here every sample already carries its synthetic anomaly, so the
    batch is not duplicated.
    """

    def forward(
        self,
        input_features: Tensor | None,
        adapted_features: Tensor,
        masks: Tensor,
        labels: Tensor,
    ) -> tuple[Tensor | None, Tensor, Tensor, Tensor]:
        masks = (masks > 0).to(torch.float32)
        labels = (labels > 0).to(torch.float32)
        return input_features, adapted_features, masks, labels

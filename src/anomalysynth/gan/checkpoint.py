"""Reading AnomalyHybrid checkpoints for inference, without the training machinery.

A checkpoint written by :class:`~anomalysynth.gan.module.AnomalyHybridGAN` (Lightning)
is read with ``torch.load(weights_only=True)``; only the generator and the condition
settings are needed to generate (:func:`load_pipeline`), so the discriminator and the
perceptual network are never built here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from anomalysynth.gan.conditions import ConditionExtractor, grey
from anomalysynth.gan.generator import AnomalyHybridGenerator
from anomalysynth.gan.pipeline import HybridPipeline

__all__ = ["CONDITION_KEYS", "GENERATOR_KEYS", "build_conditions", "load_pipeline", "match_channels", "read_checkpoint"]

#: hyperparameters that build the generator and the condition extractor (what inference needs)
GENERATOR_KEYS = ("channels", "generator_width", "num_downsampling", "num_resnet_blocks")
CONDITION_KEYS = (
    "edge_source",
    "depth_source",
    "edge_model",
    "depth_model",
    "depth_dir",
    "depth_is_distance",
    "canny_low",
    "canny_high",
    "pseudo_depth_sigma",
)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint of :class:`AnomalyHybridGAN`, loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AnomalyHybrid checkpoint {str(path)!r} does not exist.")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} is not an AnomalyHybridGAN checkpoint (no hyper_parameters/state_dict).")
    if not any(k.startswith("generator.") for k in checkpoint["state_dict"]):
        raise ValueError(f"{str(path)!r} holds no AnomalyHybrid generator weights (no 'generator.*' keys).")
    return checkpoint


def build_conditions(hparams: Any, **overrides: Any) -> ConditionExtractor:
    """The :class:`ConditionExtractor` of a module's hyperparameters (``overrides`` win)."""
    kwargs = {k: hparams[k] for k in CONDITION_KEYS if k in hparams}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    return ConditionExtractor(**kwargs)


def load_pipeline(
    path: str | Path,
    change_threshold: float = 0.02,
    map_location: str | torch.device = "cpu",
    **condition_overrides: Any,
) -> tuple[HybridPipeline, dict[str, Any]]:
    """The :class:`HybridPipeline` of a checkpoint and its hyperparameters.

    ``condition_overrides`` replace the checkpoint's condition settings (e.g. a depth
    model in place of the depth folder used in training)."""
    checkpoint = read_checkpoint(path, map_location)
    hparams = dict(checkpoint["hyper_parameters"])
    missing = [k for k in GENERATOR_KEYS if k not in hparams]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the generator hyperparameters {missing}.")
    generator = AnomalyHybridGenerator(*(hparams[k] for k in GENERATOR_KEYS))
    prefix = "generator."
    generator.load_state_dict(
        {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
    )
    conditions = build_conditions(hparams, **condition_overrides)
    return HybridPipeline(generator.eval().requires_grad_(False), conditions, change_threshold), hparams


def match_channels(images: Tensor, channels: int) -> Tensor:
    """(B, channels, H, W): grey repeated to RGB, or RGB reduced to luminance."""
    if images.shape[1] == channels:
        return images
    if channels == 3 and images.shape[1] == 1:
        return images.expand(-1, 3, -1, -1)
    if channels == 1 and images.shape[1] == 3:
        return grey(images)
    raise ValueError(f"Expected images with 1 or 3 channels; got {images.shape[1]}.")

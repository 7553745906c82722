"""The three kinds of part a blended synthesizer is made of: a mask generator, an
anomaly source and a blend.

Each part draws its own parameters from the per-sample generators it is handed (in
the order mask, source, blend; a later part sees the earlier parts' parameters),
renders deterministically from them, and reports its share of the strength (the
synthesizer's strength is the product of the shares reported). Parts are plain
objects whose constructor arguments are YAML keys (``class_path``/``init_args``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth.config import config_of

__all__ = ["AnomalySource", "Blend", "MaskGenerator", "SynthesisPart"]


class SynthesisPart:
    """What every part has: parameters, a share of the strength, a config."""

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-sample parameters (batch-first, on CPU); ``params`` holds the earlier parts'."""
        return {}

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor | None:
        """(B,) this part's share of the strength, or ``None`` if it has none."""
        return None

    def config(self) -> dict[str, object]:
        """Constructor arguments as plain data (see :mod:`anomalysynth.synth.config`)."""
        return config_of(self)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")
        return f"{type(self).__name__}({args})"


class MaskGenerator(SynthesisPart):
    """Where the anomaly goes."""

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        """(B, 1, H, W) mask in [0, 1] on the images' device."""
        raise NotImplementedError


class AnomalySource(SynthesisPart):
    """What fills the mask."""

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        """(B, C, H, W) anomaly source in [0, 1], like ``images``."""
        raise NotImplementedError


class Blend(SynthesisPart):
    """How the source enters the image. Pixels where the mask is 0 must stay bit-identical."""

    def blend(self, images: Tensor, source: Tensor, mask: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(image, mask): the blended images and the mask of what changed (the input mask, or less)."""
        raise NotImplementedError

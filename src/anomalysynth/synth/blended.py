"""A blended synthesizer: a mask generator x an anomaly source x a blend."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth import dispatch
from anomalysynth.synth.base import Synthesizer
from anomalysynth.synth.blends.alpha import AlphaBlend
from anomalysynth.synth.masks.perlin import PerlinMask
from anomalysynth.synth.parts import AnomalySource, Blend, MaskGenerator
from anomalysynth.synth.sources.generated import GeneratedTextureSource

__all__ = ["BlendedSynthesizer"]


class BlendedSynthesizer(Synthesizer):
    """The mask says where, the source what, the blend how.

    Each part draws its own parameters from the per-sample generators (mask, then
    source, then blend) and reports its share of the strength; the strength is the
    product of the shares (1 when no part has one). The base class adds the
    anomaly/normal coin, the foreground restriction and the honest label.

    On CPU float32 a Perlin mask with an alpha blend runs as one compiled pass per sample
    (see :mod:`anomalysynth.synth.dispatch`); the result equals the torch path's up to
    float rounding.

    Args:
        mask: where the anomaly goes (:mod:`anomalysynth.synth.masks`).
        source: what fills it (:mod:`anomalysynth.synth.sources`).
        blend: how it enters the image (:mod:`anomalysynth.synth.blends`).
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.

    Example:
        >>> from anomalysynth.synth.masks import PerlinMask
        >>> from anomalysynth.synth.sources import NegativeSource
        >>> from anomalysynth.synth.blends import AlphaBlend
        >>> synth = BlendedSynthesizer(PerlinMask(), NegativeSource(), AlphaBlend(opacity=(0.5, 1.0)))
        >>> out = synth(torch.rand(2, 3, 32, 32), generator=torch.Generator().manual_seed(0))
        >>> out.label.tolist()
        [1, 1]
    """

    exact_outside_mask = True  # every blend leaves the pixels where the mask is 0 bit-identical

    def __init__(
        self,
        mask: MaskGenerator,
        source: AnomalySource,
        blend: Blend,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        for name, part, kind in (
            ("mask", mask, MaskGenerator),
            ("source", source, AnomalySource),
            ("blend", blend, Blend),
        ):
            if not isinstance(part, kind):
                raise ValueError(f"`{name}` must be an instance of {kind.__name__}; got {type(part).__name__}.")
        self.mask = mask
        self.source = source
        self.blend = blend

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params: dict[str, Tensor] = {}
        for part in (self.mask, self.source, self.blend):
            params.update(part.sample(images, generators, params))
        return params

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        if self._compiled(images):
            image, mask = torch.empty_like(images), images.new_empty(images.shape[0], 1, *images.shape[-2:])
            return image, mask, self._synthesize_into(images, params, image, mask)
        mask = self.mask.render(images, params).to(images.dtype)
        source = self.source.render(images, params)
        image, mask = self.blend.blend(images, source, mask, params)
        return image, mask, self._strength(images, params)

    def _synthesize_into(
        self, images: Tensor, params: dict[str, Tensor], image_out: Tensor, mask_out: Tensor
    ) -> Tensor:
        if not self._compiled(images, image_out, mask_out):
            return super()._synthesize_into(images, params, image_out, mask_out)
        assert isinstance(self.mask, PerlinMask) and isinstance(self.blend, AlphaBlend)
        # generated textures are made (and augmented) inside the kernel; other sources arrive rendered
        if isinstance(self.source, GeneratedTextureSource):
            textures, augment = None, self.source.augment
        else:
            textures, augment = self.source.render(images, params).to(images.dtype).contiguous(), False
        if not dispatch.perlin_blend_into(images, params, self.mask.threshold, textures, augment, image_out, mask_out):
            return super()._synthesize_into(images, params, image_out, mask_out)
        self.blend.drop_unchanged(images, image_out, mask_out)
        return self._strength(images, params)

    def _compiled(self, *tensors: Tensor) -> bool:
        """Whether the fused compiled pass takes this synthesis."""
        return (
            isinstance(self.mask, PerlinMask)
            and isinstance(self.blend, AlphaBlend)
            and dispatch.kernels_enabled(*tensors)
        )

    def _chunk_size(self, images: Tensor) -> int:
        # the fused pass schedules single samples over the threads: the whole batch at once
        return images.shape[0] if self._compiled(images) else self.chunk_size

    def _strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        strength = images.new_ones(images.shape[0])
        for part in (self.mask, self.source, self.blend):
            share = part.strength(images, params)
            if share is not None:
                strength = strength * share.to(strength)
        return strength

    def extra_repr(self) -> str:
        # parts that are modules (an on-the-fly SDAS sampler) print as children
        parts = (("mask", self.mask), ("source", self.source), ("blend", self.blend))
        shown = "".join(f"{name}={part!r}, " for name, part in parts if not isinstance(part, torch.nn.Module))
        return f"{shown}{super().extra_repr()}"

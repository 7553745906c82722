"""``perlin_texture``: DRAEM's Perlin-mask texture blending (Zavrtanik et al., ICCV 2021), a preset."""

from __future__ import annotations

import logging
from pathlib import Path

from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.blends import AlphaBlend
from anomalysynth.synth.masks import PerlinMask
from anomalysynth.synth.parts import AnomalySource
from anomalysynth.synth.registry import register_synthesizer
from anomalysynth.synth.sources import GeneratedTextureSource, NegativeSource, TextureFolderSource
from anomalysynth.synth.sources.colour import check_colour

__all__ = ["PerlinTextureBlend", "texture_source"]

logger = logging.getLogger(__name__)
_TEXTURE_SOURCES = ("auto", "negative")
_warned_generated = False


@register_synthesizer("perlin_texture")
class PerlinTextureBlend(BlendedSynthesizer):
    """Perlin-noise masks filled with an augmented texture (DRAEM, RealNet).

    ``PerlinMask(perlin_scale, threshold, rotation_deg)`` x a texture source x
    ``AlphaBlend(opacity, min_change)``; strength is the opacity.

    Args:
        texture_dir: folder of texture images (e.g. DTD). Without one, coloured
            Perlin textures are generated (anomalib does the same) and a log line says so.
        opacity: range of the texture weight inside the mask. DRAEM keeps U[0, 0.8)
            of the original, i.e. opacity in (0.2, 1]; RealNet uses [0.2, 1] for DTD.
        perlin_scale: inclusive range of the exponent k of the lattice scale 2**k.
        threshold: Perlin noise threshold of the mask.
        rotation_deg: range of the mask rotation in degrees.
        augment: apply the 3-of-10 texture augmentation.
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
        texture_colour: ``"rgb"`` (DRAEM: coloured textures on any image), ``"grey"``
            (grey textures), or ``"auto"``: grey for images whose channels are all equal
            (a grey data set loaded as RGB, e.g. DeepPCB or MVTec's grid and screw), so
            the anomalies do not differ from the normal images by colour alone. A grey
            texture is augmented as one channel and written to every channel.
        min_change: drop mask pixels whose value changed by less than this; see
            :class:`~anomalysynth.synth.blends.AlphaBlend`. ``0`` (DRAEM) keeps the whole mask.
        texture_source: ``"auto"`` (the default): the images of ``texture_dir``, or
            generated textures without one; ``"negative"``: the image's own negative
            ``1 - I`` (takes no ``texture_dir``).

    Example:
        >>> import torch
        >>> synth = PerlinTextureBlend()
        >>> out = synth(torch.rand(4, 3, 64, 64), generator=torch.Generator().manual_seed(0))
        >>> out.label.tolist()
        [1, 1, 1, 1]
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        opacity: tuple[float, float] = (0.2, 1.0),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
        augment: bool = True,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
        texture_colour: str = "rgb",
        min_change: float = 0.0,
        texture_source: str = "auto",
    ) -> None:
        super().__init__(
            PerlinMask(perlin_scale, threshold, rotation_deg),
            _texture_source(texture_dir, augment, texture_colour, texture_source),
            AlphaBlend(opacity, min_change),
            anomaly_ratio,
            foreground,
            foreground_invert,
        )
        self.texture_dir = None if texture_dir is None else str(texture_dir)
        self.opacity, self.min_change = self.blend.opacity, self.blend.min_change  # type: ignore[attr-defined]
        self.perlin_scale, self.threshold, self.rotation_deg = perlin_scale, float(threshold), rotation_deg
        self.augment, self.texture_colour, self.texture_source = bool(augment), texture_colour, texture_source


def texture_source(
    texture_dir: str | Path | None, augment: bool = True, texture_colour: str = "rgb"
) -> TextureFolderSource | GeneratedTextureSource:
    """The images of ``texture_dir``, or generated textures without one (said once in the log)."""
    if texture_dir is not None:
        return TextureFolderSource(texture_dir, augment, texture_colour)
    global _warned_generated
    if not _warned_generated:
        logger.info("No texture_dir given: using generated Perlin textures as the anomaly source (as anomalib does).")
        _warned_generated = True
    return GeneratedTextureSource(augment, texture_colour)


def _texture_source(texture_dir: str | Path | None, augment: bool, colour: str, source: str) -> AnomalySource:
    check_colour(colour)
    if source not in _TEXTURE_SOURCES:
        raise ValueError(f"`texture_source` must be one of {_TEXTURE_SOURCES}; got {source!r}.")
    if source == "negative":
        if texture_dir is not None:
            raise ValueError("`texture_source='negative'` uses the image's own negative: pass no `texture_dir`.")
        return NegativeSource(augment)
    return texture_source(texture_dir, augment, colour)

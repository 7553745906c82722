"""``memseg``: MemSeg's anomaly synthesis (Yang et al., 2023), a preset: Perlin masks
filled half the time with a texture and half the time with "structure", the image
itself augmented and shuffled on a grid."""

from __future__ import annotations

from pathlib import Path

from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.blends import AlphaBlend
from anomalysynth.synth.masks import PerlinMask
from anomalysynth.synth.perlin_texture import texture_source
from anomalysynth.synth.registry import register_synthesizer
from anomalysynth.synth.sources import SourceMixture, StructureSource, grid_shuffle

__all__ = ["MemSegBlend", "grid_shuffle"]


@register_synthesizer("memseg")
class MemSegBlend(BlendedSynthesizer):
    """Perlin-mask blending with a texture or a structure source, opacity U[0.15, 1].

    ``PerlinMask`` x ``SourceMixture([texture, StructureSource(grid)])`` x ``AlphaBlend(opacity)``;
    ``params["source_choice"]`` is 1 where the source is structure.

    Args:
        texture_dir: folder of texture images; generated textures without one.
        structure_ratio: probability that a sample's source is structure rather than texture.
        grid: the structure source is shuffled on a ``grid x grid`` block grid.
        opacity: range of the source weight inside the mask.
        foreground: MemSeg restricts anomalies to a per-category grey threshold
            foreground: pass ``"otsu"`` / ``"triangle"`` (``foreground_invert`` for
            dark objects) or a tensor to ``forward``.
        perlin_scale, threshold, rotation_deg, anomaly_ratio, foreground_invert:
            see :class:`PerlinTextureBlend`.
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        structure_ratio: float = 0.5,
        grid: int = 8,
        opacity: tuple[float, float] = (0.15, 1.0),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        if not 0.0 <= structure_ratio <= 1.0:
            raise ValueError(f"`structure_ratio` must lie in [0, 1]; got {structure_ratio}.")
        source = SourceMixture(
            [texture_source(texture_dir), StructureSource(grid)], weights=[1 - structure_ratio, structure_ratio]
        )
        super().__init__(
            PerlinMask(perlin_scale, threshold, rotation_deg),
            source,
            AlphaBlend(opacity),
            anomaly_ratio,
            foreground,
            foreground_invert,
        )
        self.texture_dir = None if texture_dir is None else str(texture_dir)
        self.structure_ratio, self.grid, self.opacity = float(structure_ratio), int(grid), self.blend.opacity  # type: ignore[attr-defined]
        self.perlin_scale, self.threshold, self.rotation_deg = perlin_scale, float(threshold), rotation_deg

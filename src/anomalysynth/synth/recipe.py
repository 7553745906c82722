"""The shipped training mix: several synthesis families, so that no one family's look
becomes the detector's definition of "defect".

``SyntheticAnomalyDataModule`` uses it when no synthesizer is given, with
``normal_dir`` set to the folder of the wrapped data module's training images: the
anomalies' content then comes from the user's own normal images (other places, other
images), from generated Perlin textures and from CutPaste, whatever the data set. How
it was chosen, and what it gives on real data, is in the README (RealNet section).
"""

from __future__ import annotations

from pathlib import Path

from anomalysynth.synth.compose import OneOf
from anomalysynth.synth.cutpaste import CutPasteUnion
from anomalysynth.synth.nsa import NSA
from anomalysynth.synth.perlin_texture import PerlinTextureBlend
from anomalysynth.synth.registry import register_synthesizer

__all__ = ["DefaultMix"]


@register_synthesizer("default_mix")
class DefaultMix(OneOf):
    """One of five families per anomalous sample, with equal probability:

    1. Perlin-shaped regions filled with another normal training image (``normal_dir``),
       DRAEM's texture augmentation, opacity 0.5-1, at least ``min_change`` mean change
       inside the region: a change of appearance;
    2. the same without augmentation at opacity 0.9-1 and at least 0.3 mean change:
       the right material in the wrong structure (another place of a normal image);
    3. Perlin-shaped regions filled with generated textures (anomalib's DRAEM source);
    4. CutPaste (a patch of the image itself, box or scar);
    5. NSA (a patch of another normal image, Poisson-blended; without ``normal_dir``,
       of the image itself).

    Args:
        normal_dir: folder of normal training images the image-content families draw
            from (``None``: generated textures and the image itself).
        min_change: the mean absolute change a region of family 1 must make.
        perlin_scale: the lattice exponents of the Perlin families' masks (2**k cells per
            side). The shipped (3, 5) draws regions of about 8-32 px at 256 px, the size of
            real small defects; the Perlin synthesizers' own (0, 5) also draws regions as large as the
            image. On the validation halves (3, 5) raised DeepPCB's image AUROC from 0.645
            to 0.808 (top 10, w = 0.25) and left BSData's about level (README, "The
            shipped recipe on real data").
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    def __init__(
        self,
        normal_dir: str | Path | None = None,
        min_change: float = 0.1,
        perlin_scale: tuple[int, int] = (3, 5),
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        if normal_dir is not None and not Path(normal_dir).is_dir():
            raise ValueError(f"`normal_dir` must be a folder of normal training images; got {normal_dir!r}.")
        fine = (int(perlin_scale[0]), int(perlin_scale[1]))
        own = PerlinTextureBlend(texture_dir=normal_dir, opacity=(0.5, 1.0), min_change=min_change, perlin_scale=fine)
        structure = PerlinTextureBlend(
            texture_dir=normal_dir, opacity=(0.9, 1.0), augment=False, min_change=0.3, perlin_scale=fine
        )
        super().__init__(
            [own, structure, PerlinTextureBlend(perlin_scale=fine), CutPasteUnion(), NSA(bank=normal_dir)],
            anomaly_ratio=anomaly_ratio,
            foreground=foreground,
            foreground_invert=foreground_invert,
        )
        self.normal_dir = None if normal_dir is None else str(normal_dir)
        self.min_change = float(min_change)
        self.perlin_scale = fine

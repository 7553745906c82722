"""``cutpaste``, ``cutpaste_scar``, ``cutpaste_union``: CutPaste and CutPaste-Scar (Li et
al., CVPR 2021), presets.

A rectangle cut from the image itself, colour-jittered, is pasted elsewhere (normal
CutPaste) or a thin rotated strip is (scar): a CutPaste mask x the image's own patch
x a paste. The mask is the pasted region (the reference code returns none). Strength
is the patch area as a fraction of the image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.blends import PasteBlend
from anomalysynth.synth.compose import OneOf
from anomalysynth.synth.masks import CutPasteBoxMask, CutPasteScarMask
from anomalysynth.synth.registry import register_synthesizer
from anomalysynth.synth.sources import CutPastePatch

__all__ = ["CUTPASTE_CLASSES", "CutPaste", "CutPasteScar", "CutPasteUnion"]

#: 3-way class of each sample in ``params["cutpaste_class"]``: 0 normal, 1 CutPaste, 2 scar.
CUTPASTE_CLASSES = ("normal", "cutpaste", "scar")


@register_synthesizer("cutpaste")
class CutPaste(BlendedSynthesizer):
    """Normal CutPaste: a rectangle of 2-15 % of the image area, aspect ratio
    log-uniform in [0.3, 1/0.3], colour-jittered and pasted elsewhere.

    Args:
        area_ratio: range of the patch area as a fraction of the image area.
        aspect_ratio: range of width / height (drawn log-uniformly).
        color_jitter: ColorJitter strength for brightness, contrast, saturation, hue.
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    def __init__(
        self,
        area_ratio: tuple[float, float] = (0.02, 0.15),
        aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        mask = CutPasteBoxMask(area_ratio, aspect_ratio)
        super().__init__(mask, CutPastePatch(color_jitter), PasteBlend(), anomaly_ratio, foreground, foreground_invert)
        self.area_ratio, self.aspect_ratio, self.color_jitter = mask.area_ratio, mask.aspect_ratio, float(color_jitter)


@register_synthesizer("cutpaste_scar")
class CutPasteScar(BlendedSynthesizer):
    """CutPaste-Scar: a thin strip (width 2-16 px, height 10-25 px at 256 px,
    scaled with the image) rotated by -45..45 degrees.

    Args:
        width: range of the strip width in pixels at ``reference_size``.
        height: range of the strip height in pixels at ``reference_size``.
        rotation_deg: range of the rotation.
        reference_size: image size the pixel ranges refer to.
        color_jitter, anomaly_ratio, foreground, foreground_invert: as :class:`CutPaste`.
    """

    def __init__(
        self,
        width: tuple[int, int] = (2, 16),
        height: tuple[int, int] = (10, 25),
        rotation_deg: tuple[float, float] = (-45.0, 45.0),
        reference_size: int = 256,
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        mask = CutPasteScarMask(width, height, rotation_deg, reference_size)
        super().__init__(mask, CutPastePatch(color_jitter), PasteBlend(), anomaly_ratio, foreground, foreground_invert)
        self.width, self.height, self.rotation_deg = mask.width, mask.height, mask.rotation_deg
        self.reference_size, self.color_jitter = mask.reference_size, float(color_jitter)


@register_synthesizer("cutpaste_union")
class CutPasteUnion(OneOf):
    """CutPaste (Union): each anomalous sample is CutPaste or scar with probability 1/2.

    ``params["cutpaste_class"]`` holds the 3-way class (0 normal, 1 CutPaste, 2 scar)
    for training the paper's 3-way classifier.
    """

    def __init__(
        self,
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(
            [CutPaste(color_jitter=color_jitter), CutPasteScar(color_jitter=color_jitter)],
            weights=[0.5, 0.5],
            anomaly_ratio=anomaly_ratio,
            foreground=foreground,
            foreground_invert=foreground_invert,
        )
        self.color_jitter = float(color_jitter)

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params = super()._sample(images, generators)
        params["cutpaste_class"] = params["choice"] + 1
        return params

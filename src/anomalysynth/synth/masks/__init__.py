"""Mask generators: where a blended synthesizer puts the anomaly."""

from anomalysynth.synth.masks.cutpaste import CutPasteBoxMask, CutPasteScarMask
from anomalysynth.synth.masks.folder import MaskFolder
from anomalysynth.synth.masks.perlin import PerlinMask

__all__ = ["CutPasteBoxMask", "CutPasteScarMask", "MaskFolder", "PerlinMask"]

"""Blends: how a blended synthesizer puts the source into the image."""

from anomalysynth.synth.blends.alpha import AlphaBlend
from anomalysynth.synth.blends.paste import PasteBlend

__all__ = ["AlphaBlend", "PasteBlend"]

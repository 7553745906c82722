"""Anomaly sources: what a blended synthesizer puts into the mask."""

from anomalysynth.synth.sources.generated import GeneratedTextureSource
from anomalysynth.synth.sources.mixture import SourceMixture
from anomalysynth.synth.sources.negative import NegativeSource
from anomalysynth.synth.sources.patch import CutPastePatch
from anomalysynth.synth.sources.sdas import SDASBankSource, SDASSamplerSource
from anomalysynth.synth.sources.structure import StructureSource, grid_shuffle
from anomalysynth.synth.sources.texture_folder import TextureFolderSource

__all__ = [
    "CutPastePatch",
    "GeneratedTextureSource",
    "NegativeSource",
    "SDASBankSource",
    "SDASSamplerSource",
    "SourceMixture",
    "StructureSource",
    "TextureFolderSource",
    "grid_shuffle",
]

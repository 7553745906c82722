"""Anomaly synthesizers: the contract, the registry, composition (mask x source x blend)
and every method."""

from anomalysynth.seeding import per_sample_generators
from anomalysynth.synth.anomalyany import AnomalyAny
from anomalysynth.synth.anomalyhybrid import AnomalyHybrid
from anomalysynth.synth.base import Synthesizer, SynthOutput, slice_params, validate_images
from anomalysynth.synth.blend import blend
from anomalysynth.synth.blended import BlendedSynthesizer
from anomalysynth.synth.compose import OneOf
from anomalysynth.synth.config import from_config
from anomalysynth.synth.cutpaste import CUTPASTE_CLASSES, CutPaste, CutPasteScar, CutPasteUnion
from anomalysynth.synth.foreground import foreground_mask
from anomalysynth.synth.memseg import MemSegBlend
from anomalysynth.synth.nsa import NSA
from anomalysynth.synth.parts import AnomalySource, Blend, MaskGenerator
from anomalysynth.synth.perlin import perlin_mask, perlin_noise
from anomalysynth.synth.perlin_texture import PerlinTextureBlend
from anomalysynth.synth.recipe import DefaultMix
from anomalysynth.synth.registry import available_synthesizers, create_synthesizer, register_synthesizer
from anomalysynth.synth.sdas import SDASBlend

__all__ = [
    "AnomalyAny",
    "AnomalyHybrid",
    "AnomalySource",
    "Blend",
    "BlendedSynthesizer",
    "CUTPASTE_CLASSES",
    "CutPaste",
    "CutPasteScar",
    "CutPasteUnion",
    "DefaultMix",
    "MaskGenerator",
    "MemSegBlend",
    "NSA",
    "OneOf",
    "PerlinTextureBlend",
    "SDASBlend",
    "SynthOutput",
    "Synthesizer",
    "available_synthesizers",
    "blend",
    "create_synthesizer",
    "foreground_mask",
    "from_config",
    "per_sample_generators",
    "perlin_mask",
    "perlin_noise",
    "register_synthesizer",
    "slice_params",
    "validate_images",
]

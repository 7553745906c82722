"""Lightning callbacks."""

from anomalysynth.callbacks.afs import AnomalyAwareFeatureSelection
from anomalysynth.callbacks.min_steps import EpochsForMinSteps
from anomalysynth.callbacks.sample_grid import DiffusionSampleGrid
from anomalysynth.callbacks.strength_curriculum import StrengthCurriculum
from anomalysynth.callbacks.synthesize_on_device import SynthesizeOnDevice

__all__ = [
    "AnomalyAwareFeatureSelection",
    "DiffusionSampleGrid",
    "EpochsForMinSteps",
    "StrengthCurriculum",
    "SynthesizeOnDevice",
]

"""Lightning callbacks."""

from anomalysynth.callbacks.afs import AnomalyAwareFeatureSelection
from anomalysynth.callbacks.sample_grid import DiffusionSampleGrid
from anomalysynth.callbacks.synthesize_on_device import SynthesizeOnDevice

__all__ = ["AnomalyAwareFeatureSelection", "DiffusionSampleGrid", "SynthesizeOnDevice"]

"""Lightning callbacks."""

from anomalysynth.callbacks.afs import AnomalyAwareFeatureSelection
from anomalysynth.callbacks.synthesize_on_device import SynthesizeOnDevice

__all__ = ["AnomalyAwareFeatureSelection", "SynthesizeOnDevice"]

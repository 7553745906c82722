"""Lightning callbacks."""

from anomalysynth.callbacks.synthesize_on_device import SynthesizeOnDevice

__all__ = ["SynthesizeOnDevice"]

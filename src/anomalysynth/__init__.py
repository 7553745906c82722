"""anomalysynth: synthetic anomalies for training visual anomaly detectors."""

from anomalysynth.synth import (
    OneOf,
    Synthesizer,
    SynthOutput,
    available_synthesizers,
    create_synthesizer,
)

__version__ = "0.1.0"

__all__ = ["OneOf", "SynthOutput", "Synthesizer", "__version__", "available_synthesizers", "create_synthesizer"]

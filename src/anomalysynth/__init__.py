"""anomalysynth: synthetic anomalies for training visual anomaly detectors."""

from anomalysynth.synth import (
    OneOf,
    Synthesizer,
    SynthOutput,
    available_synthesizers,
    create_synthesizer,
)

__version__ = "0.1.0"

# offline pretrained timm tags (efficientnet_lite0.offline_in1k, ...) for anomalib backbones
from anomalysynth.backbones import register_offline_backbones as _register_offline_backbones

_register_offline_backbones()

__all__ = ["OneOf", "SynthOutput", "Synthesizer", "__version__", "available_synthesizers", "create_synthesizer"]

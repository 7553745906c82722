"""RealNet: feature reconstruction with anomaly-aware feature selection."""

from anomalysynth.models.realnet.afs import afs_channel_errors, select_channels
from anomalysynth.models.realnet.lightning_model import RealNet
from anomalysynth.models.realnet.rrs import residual_selection
from anomalysynth.models.realnet.torch_model import RealNetModel, ReconstructionUNet, default_dims

__all__ = [
    "RealNet",
    "RealNetModel",
    "ReconstructionUNet",
    "afs_channel_errors",
    "default_dims",
    "residual_selection",
    "select_channels",
]

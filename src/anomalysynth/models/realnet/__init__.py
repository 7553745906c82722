"""RealNet: feature reconstruction with anomaly-aware feature selection.

Layers, one per module: ``features`` (extractor, BatchNorm folding, selection,
standardisation, default dims), ``reconstruction`` (U-Nets, residuals),
``discriminator`` (RRS, projected features), ``scoring`` (map, normality terms,
image score), ``feature_anomalies`` (optional feature noise on normal training
samples), ``checkpoint`` (older state dicts); ``torch_model`` composes them and
``lightning_model`` trains them (with an ordered warm-up before fit).
"""

from anomalysynth.models.realnet.discriminator import residual_selection
from anomalysynth.models.realnet.features import default_dims
from anomalysynth.models.realnet.lightning_model import RealNet
from anomalysynth.models.realnet.reconstruction import ReconstructionUNet
from anomalysynth.models.realnet.torch_model import RealNetModel
from anomalysynth.selection.afs import afs_channel_errors, select_channels

__all__ = [
    "RealNet",
    "RealNetModel",
    "ReconstructionUNet",
    "afs_channel_errors",
    "default_dims",
    "residual_selection",
    "select_channels",
]

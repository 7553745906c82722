"""Detectors."""

from anomalysynth.models.afs_padim import AFSPadim
from anomalysynth.models.realnet import RealNet

__all__ = ["AFSPadim", "RealNet"]

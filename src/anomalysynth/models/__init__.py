"""Detectors."""

from anomalysynth.models.realnet import RealNet

__all__ = ["RealNet"]

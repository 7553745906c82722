"""Diffusion models of normal images and SDAS sampling (RealNet)."""

from anomalysynth.diffusion.bank import SDASBank, build_sdas_bank
from anomalysynth.diffusion.losses import DiffusionSchedule, HybridLoss, hybrid_loss
from anomalysynth.diffusion.module import NormalImageDiffusion
from anomalysynth.diffusion.sampler import SDASSampler, has_learned_variance, load_diffusion

__all__ = [
    "DiffusionSchedule",
    "HybridLoss",
    "NormalImageDiffusion",
    "SDASBank",
    "SDASSampler",
    "build_sdas_bank",
    "has_learned_variance",
    "hybrid_loss",
    "load_diffusion",
]

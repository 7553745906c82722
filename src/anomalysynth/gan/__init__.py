"""AnomalyHybrid (Zhao, CVPRW 2025): a depth/edge-conditioned GAN and its training."""

from anomalysynth.gan.augment import TripletAugmentation
from anomalysynth.gan.checkpoint import load_pipeline, read_checkpoint
from anomalysynth.gan.conditions import ConditionExtractor, edge_map, pseudo_depth
from anomalysynth.gan.discriminator import MultiscaleDiscriminator, PatchDiscriminator
from anomalysynth.gan.generator import AnomalyHybridGenerator, DecoderOutput, fuse
from anomalysynth.gan.grid import AnomalyHybridSampleGrid, hybrid_grid
from anomalysynth.gan.losses import feature_matching_loss, gan_loss
from anomalysynth.gan.manipulations import MANIPULATIONS, manipulate
from anomalysynth.gan.module import AnomalyHybridGAN
from anomalysynth.gan.perceptual import PerceptualLoss
from anomalysynth.gan.pipeline import HYBRID_MODES, HybridPipeline, HybridResult

__all__ = [
    "HYBRID_MODES",
    "MANIPULATIONS",
    "AnomalyHybridGAN",
    "AnomalyHybridGenerator",
    "AnomalyHybridSampleGrid",
    "ConditionExtractor",
    "DecoderOutput",
    "HybridPipeline",
    "HybridResult",
    "MultiscaleDiscriminator",
    "PatchDiscriminator",
    "PerceptualLoss",
    "TripletAugmentation",
    "edge_map",
    "feature_matching_loss",
    "fuse",
    "gan_loss",
    "hybrid_grid",
    "load_pipeline",
    "manipulate",
    "pseudo_depth",
    "read_checkpoint",
]

"""Generation-quality metrics: IS, IC-LPIPS, FID and KID in a named feature space.

The offline default is EfficientNet-Lite0 (``efficientnet_lite0.offline_in1k``) for
features, class logits and the perceptual distance; its numbers carry ``_effnet`` in
their names (``fid_effnet``, ``kid_effnet``, ``is_effnet``, ``ic_lpips_effnet``) and
are not comparable with the papers' Inception/LPIPS numbers, which these functions
give under the papers' names when the user supplies those weight files.
"""

from anomalysynth.metrics.feature_networks import (
    EfficientNetFeatures,
    FeatureNetwork,
    ImageFeatures,
    InceptionFeatures,
    create_feature_network,
)
from anomalysynth.metrics.frechet import frechet_distance
from anomalysynth.metrics.ic_lpips import ic_lpips, nearest_centres
from anomalysynth.metrics.inception_score import inception_score
from anomalysynth.metrics.kernel import kernel_distance, mmd2_unbiased
from anomalysynth.metrics.perceptual import (
    EfficientNetPerceptual,
    LpipsAlexNet,
    PerceptualDistance,
    create_perceptual_distance,
)
from anomalysynth.metrics.quality import GenerationQuality, ImageSet
from anomalysynth.metrics.regions import mask_crops

__all__ = [
    "EfficientNetFeatures",
    "EfficientNetPerceptual",
    "FeatureNetwork",
    "GenerationQuality",
    "ImageFeatures",
    "ImageSet",
    "InceptionFeatures",
    "LpipsAlexNet",
    "PerceptualDistance",
    "create_feature_network",
    "create_perceptual_distance",
    "frechet_distance",
    "ic_lpips",
    "inception_score",
    "kernel_distance",
    "mask_crops",
    "mmd2_unbiased",
    "nearest_centres",
]

"""Feature-space anomalies: perturbations of a detector's features instead of its images.

* :class:`GaussianFeatureNoise`: SimpleNet's Gaussian noise N(0, sigma) on (adapted) features.
* :class:`GradientAscentAnomalies`: GLASS's global anomalies, Gaussian noise pushed by
  gradient ascent on the discriminator's loss and projected back into a shell around
  the normal features.
* :class:`GlassLocalAnomalies`: GLASS's local branch, in image space: textures blended
  under the union, intersection or one of two Perlin masks.

Every module draws its randomness from explicit generators (one per sample), returns
its parameters for replay and reports a per-sample strength, as the image
synthesizers do. Any detector that exposes features can use them, e.g.::

    noisy = GaussianFeatureNoise(std=0.015)(features, generator=g)        # features (B, ...)
    hard = GradientAscentAnomalies()(true_feats, discriminator, generator=g)  # (B, N, D)
"""

from anomalysynth.features.base import FeatureAnomalies
from anomalysynth.features.gaussian_noise import GaussianFeatureNoise
from anomalysynth.features.glass_local import GlassLocalAnomalies
from anomalysynth.features.gradient_ascent import GradientAscentAnomalies

__all__ = ["FeatureAnomalies", "GaussianFeatureNoise", "GlassLocalAnomalies", "GradientAscentAnomalies"]

"""Feature-space anomalies as an extra anomaly source of RealNet's training.

SimpleNet's Gaussian noise (:class:`~anomalysynth.features.GaussianFeatureNoise`) added to
the selected, standardised features of normal training samples, before they are
reconstructed and judged, so the reconstruction residuals and the features the
discriminator sees carry the same perturbation. The noise covers the whole map
(SimpleNet) or a Perlin mask drawn at image size (SuperSimpleNet); the mask is the
segmentation label, like a synthetic image anomaly's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomalysynth.features import GaussianFeatureNoise
from anomalysynth.seeding import uniform
from anomalysynth.synth.masks import PerlinMask

__all__ = ["FEATURE_ANOMALY_MASKS", "FeatureNoiseAnomalies", "FeatureNoiseDraw"]

#: where the noise goes: under a Perlin mask (SuperSimpleNet) or over the whole map (SimpleNet)
FEATURE_ANOMALY_MASKS = ("perlin", "whole")


@dataclass(frozen=True)
class FeatureNoiseDraw:
    """One batch's feature anomalies: which samples, where, and the generators of their noise.

    Call it once on the per-level selected features (``RealNetModel.forward``'s ``perturb``).

    Attributes:
        noise: the noise module.
        samples: (n,) indices of the perturbed samples.
        mask: (B, 1, H, W) 1 where noise is added, in image pixels (0 for the other samples).
        generators: the perturbed samples' generators, in the order of ``samples``.
    """

    noise: GaussianFeatureNoise
    samples: Tensor
    mask: Tensor
    generators: list[torch.Generator]

    def __call__(self, features: list[Tensor]) -> list[Tensor]:
        """Each level's (B, D, h, w) features with noise on the chosen samples, under the mask
        max-pooled to the level (a cell is perturbed when any pixel it covers is)."""
        if not self.generators:
            return features
        region = self.mask.index_select(0, self.samples)
        out = []
        for level in features:
            chosen = level.index_select(0, self.samples)
            under = F.adaptive_max_pool2d(region, level.shape[-2:]).to(level.dtype)
            noisy = self.noise(chosen, generator=self.generators, mask=under).features
            out.append(level.index_copy(0, self.samples, noisy))
        return out


class FeatureNoiseAnomalies(nn.Module):
    """Decides which normal samples of a training batch get feature noise, and where.

    Args:
        probability: chance that a normal training sample (one with an empty synthetic
            mask) gets noise (0: off).
        std: the noise's standard deviation (SimpleNet: 0.015).
        mask: ``"perlin"``: under a DRAEM Perlin mask (:class:`~anomalysynth.synth.masks.PerlinMask`)
            drawn at image size, as SuperSimpleNet does; ``"whole"``: everywhere, as SimpleNet does.
    """

    def __init__(self, probability: float = 0.0, std: float = 0.015, mask: str = "perlin") -> None:
        super().__init__()
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError(
                "Expected `feature_anomalies` in [0, 1] (the probability that a normal training sample gets "
                f"feature noise); got {probability!r}."
            )
        if isinstance(std, bool) or not isinstance(std, int | float) or not (std > 0 and math.isfinite(std)):
            raise ValueError(f"Expected `feature_noise_std` > 0 and finite; got {std!r}.")
        if mask not in FEATURE_ANOMALY_MASKS:
            raise ValueError(f"Expected `feature_anomaly_mask` in {FEATURE_ANOMALY_MASKS}; got {mask!r}.")
        self.probability = float(probability)
        self.mask = mask
        self.noise = GaussianFeatureNoise(std)
        self._mask_generator = PerlinMask() if mask == "perlin" else None

    def draw(self, normal: Tensor, size: Sequence[int], generators: list[torch.Generator]) -> FeatureNoiseDraw:
        """Choose the samples and their masks.

        Args:
            normal: (B,) bool, the samples without a synthetic anomaly.
            size: (H, W) of the mask (the segmentation label's size).
            generators: one per sample; sample i's coin, mask and noise come from
                ``generators[i]`` alone (every sample flips its coin).
        """
        if len(generators) != normal.shape[0]:
            raise ValueError(f"Expected one generator per sample ({normal.shape[0]}); got {len(generators)}.")
        coin = uniform(generators, 0.0, 1.0)
        samples = torch.nonzero((coin < self.probability) & normal.cpu()).flatten()
        chosen = [generators[i] for i in samples.tolist()]
        mask = torch.zeros(normal.shape[0], 1, *size, device=normal.device)
        if chosen:
            region = mask.new_ones(len(chosen), 1, *size)
            if self._mask_generator is not None:
                region = self._mask_generator.render(region, self._mask_generator.sample(region, chosen, {}))
            mask = mask.index_copy(0, samples.to(mask.device), region.to(mask.dtype))
        return FeatureNoiseDraw(self.noise, samples.to(normal.device), mask, chosen)

    def extra_repr(self) -> str:
        return f"probability={self.probability}, mask={self.mask!r}"

"""SimpleNet's feature-space anomalies: Gaussian noise on the (adapted) features.

Liu et al., SimpleNet (CVPR 2023): anomalous features are ``f + e`` with
``e ~ N(0, sigma^2 I)``, sigma = 0.015 in the run scripts. SuperSimpleNet adds the same
noise only under a mask; pass ``mask`` for that.
"""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.features.base import FeatureAnomalies, check_features
from anomalysynth.seeding import GeneratorLike, draw, per_sample_generators

__all__ = ["GaussianFeatureNoise"]


class GaussianFeatureNoise(torch.nn.Module):
    """Gaussian noise N(0, ``std``) on features.

    Args:
        std: the noise's standard deviation (SimpleNet: 0.015); the strength knob.

    Call with features (B, D), (B, N, D) (channels last) or (B, D, h, w) (maps), an
    explicit generator (one, one per sample, or ``None``), optionally ``params`` to
    replay and a ``mask`` broadcastable to the features restricting the noise.

    Example:
        >>> noise = GaussianFeatureNoise(std=0.015)
        >>> out = noise(torch.zeros(2, 4, 8), generator=torch.Generator().manual_seed(0))
        >>> out.features.shape, round(float(out.features.std()), 2)
        (torch.Size([2, 4, 8]), 0.01)
    """

    def __init__(self, std: float = 0.015) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"`std` must be > 0; got {std}.")
        self.std = float(std)

    def sample_params(self, features: Tensor, generator: GeneratorLike = None) -> dict[str, Tensor]:
        """One standard-normal draw per sample (sample i depends on generator i only)."""
        features = check_features(features)
        gens = per_sample_generators(generator, features.shape[0])
        shape = tuple(features.shape[1:])
        noise = draw(gens, lambda g: torch.randn(shape, generator=g))
        return {"noise": noise.to(features.device, features.dtype)}

    def forward(
        self,
        features: Tensor,
        generator: GeneratorLike = None,
        params: dict[str, Tensor] | None = None,
        mask: Tensor | None = None,
    ) -> FeatureAnomalies:
        features = check_features(features)
        if params is None:
            params = self.sample_params(features, generator)
        noise = params["noise"].to(features.device, features.dtype)
        if noise.shape != features.shape:
            raise ValueError(f"Expected params['noise'] of shape {tuple(features.shape)}; got {tuple(noise.shape)}.")
        noise = noise * self.std
        region = torch.ones_like(features)
        if mask is not None:
            region = region * mask.to(features.dtype)
            noise = noise * region
        channel = 1 if features.ndim == 4 else -1  # maps (B, D, h, w); else channels last
        distance = noise.norm(dim=channel).flatten(1).mean(dim=1)
        return FeatureAnomalies(
            features=features + noise,
            mask=region.amax(dim=channel, keepdim=features.ndim == 4),
            strength=distance,
            params=params,
        )

    def extra_repr(self) -> str:
        return f"std={self.std}"

"""What the feature-space anomaly modules return, and their input check."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["FeatureAnomalies", "check_features"]


@dataclass
class FeatureAnomalies:
    """Anomalous features.

    Attributes:
        features: the perturbed features, same shape as the input (batch-first).
        mask: where the features were perturbed, the input's shape without its
            channel dimension: (B, N) for (B, N, D) features, (B, 1, h, w) for maps.
        strength: (B,) mean distance between the perturbed and the input features.
        params: batch-first tensors that replay this draw.
    """

    features: Tensor
    mask: Tensor
    strength: Tensor
    params: dict[str, Tensor] = field(default_factory=dict)


def check_features(features: object, rank: tuple[int, ...] = (2, 3, 4)) -> Tensor:
    """``features`` if it is a float tensor of an accepted rank, else ValueError."""
    expected = f"a float feature tensor, batch first, of rank {' or '.join(map(str, rank))}"
    if not isinstance(features, Tensor):
        raise ValueError(f"Expected {expected}; got {type(features).__name__}.")
    if not features.is_floating_point() or features.ndim not in rank or features.shape[0] == 0:
        raise ValueError(f"Expected {expected}; got {features.dtype} of shape {tuple(features.shape)}.")
    return features

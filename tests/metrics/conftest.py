"""Shared pieces of the metric tests: an identity "network" for torchmetrics and the offline networks."""

from __future__ import annotations

import pytest
import torch


class FeaturesAsInput(torch.nn.Module):
    """Hands torchmetrics precomputed features (or logits) as if a network had made them."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.fixture(scope="session")
def effnet_features():
    from anomalysynth.metrics import EfficientNetFeatures

    return EfficientNetFeatures(input_size=64)


@pytest.fixture(scope="session")
def effnet_perceptual():
    from anomalysynth.metrics import EfficientNetPerceptual

    return EfficientNetPerceptual()

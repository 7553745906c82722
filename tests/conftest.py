"""Shared fixtures: small real-looking images made from scikit-image's photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data


def photo_batch(batch: int, channels: int, size: int = 64) -> torch.Tensor:
    """(B, C, size, size) float crops of real photographs, deterministic."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.immunohistochemistry()]
    out = []
    for i in range(batch):
        img = sources[i % len(sources)]
        y, x = (17 * i) % (img.shape[0] - size), (29 * i) % (img.shape[1] - size)
        crop = img[y : y + size, x : x + size].astype(np.float32) / 255
        tensor = torch.from_numpy(crop).permute(2, 0, 1)
        if channels == 1:
            tensor = (tensor * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        out.append(tensor.clamp(0, 1))
    return torch.stack(out)


@pytest.fixture
def rgb_batch() -> torch.Tensor:
    return photo_batch(8, 3)


@pytest.fixture
def gray_batch() -> torch.Tensor:
    return photo_batch(8, 1)

"""Shared fixtures: small real-looking images made from scikit-image's photographs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from anomalysynth.datamodules.demo import build_demo_dataset


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


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return build_demo_dataset(
        tmp_path_factory.mktemp("tiny_demo"), "brick", image_size=48, num_train=10, num_test_good=2, num_defects=1
    )


@pytest.fixture
def tiny_folder(tiny_tree):
    from anomalib.data import Folder

    defects = ["scratch", "inclusion", "dent"]
    return Folder(
        name="tiny",
        root=tiny_tree,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{d}" for d in defects],
        mask_dir=[f"ground_truth/{d}" for d in defects],
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
    )

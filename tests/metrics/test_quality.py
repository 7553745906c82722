"""GenerationQuality: honest names, the mask variants, and torchmetrics' FID on the same network."""

from __future__ import annotations

import math

import pytest
import torch

from anomalysynth.metrics import GenerationQuality, ImageSet, frechet_distance, mask_crops
from tests.conftest import photo_batch


@pytest.fixture(scope="module")
def quality(effnet_features, effnet_perceptual):
    return GenerationQuality(effnet_features, perceptual=effnet_perceptual, crop_size=32)


def boxes(n: int, size: int = 64) -> torch.Tensor:
    masks = torch.zeros(n, 1, size, size)
    for i in range(n):
        masks[i, :, 8 + 2 * i : 24 + 2 * i, 10 : 30 + i] = 1
    return masks


def test_every_name_carries_the_network_and_all_sets_give_every_metric(quality):
    synthetic = ImageSet(photo_batch(6, 3), boxes(6))
    normal = ImageSet(photo_batch(8, 3))
    defects = ImageSet(photo_batch(5, 3).flip(-1), boxes(5))
    values = quality.evaluate(synthetic, normal, defects)
    expected = {
        "is_effnet",
        "is_mask_effnet",
        "ic_lpips_effnet",
        "ic_lpips_mask_effnet",
        "fid_to_normal_effnet",
        "kid_to_normal_effnet",
        "fid_to_defects_effnet",
        "kid_to_defects_effnet",
        "fid_mask_to_defects_effnet",
        "kid_mask_to_defects_effnet",
    }
    assert set(values) == expected
    assert all(not math.isnan(values[k]) for k in expected - {"ic_lpips_effnet", "ic_lpips_mask_effnet"})


def test_without_defects_only_normal_references(quality):
    values = quality.evaluate(ImageSet(photo_batch(4, 3), boxes(4)), ImageSet(photo_batch(4, 3)))
    assert not any("defects" in k for k in values)
    assert values["fid_to_normal_effnet"] == pytest.approx(0.0, abs=1e-3)  # the same images


def test_pipeline_fid_equals_torchmetrics_fid_with_the_same_network(effnet_features):
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = photo_batch(8, 3), (photo_batch(8, 3) * 0.8 + 0.1)
    metric = FrechetInceptionDistance(feature=ReturnFeatures(effnet_features), normalize=True)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = frechet_distance(effnet_features.extract(real).features, effnet_features.extract(fake).features)
    assert ours == pytest.approx(float(metric.compute()), rel=1e-3)


class ReturnFeatures(torch.nn.Module):
    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network
        self.num_features = network.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)[0]


def test_mask_crops_cut_the_box_with_its_margin():
    images = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 64, 64) / 4096
    masks = torch.zeros(1, 1, 64, 64)
    masks[:, :, 20:28, 30:38] = 1  # an 8 px box -> 12 px with 25% margin on each side
    crop = mask_crops(images, masks, size=12)
    assert torch.allclose(crop[0, 0], images[0, 0, 18:30, 28:40], atol=1e-6)
    assert mask_crops(images, torch.zeros_like(masks), size=12).shape == (0, 1, 12, 12)


def test_inception_needs_its_weights_file(tmp_path):
    from anomalysynth.metrics import create_feature_network

    with pytest.raises(ValueError, match="weights"):
        create_feature_network("inception")
    with pytest.raises(FileNotFoundError):
        create_feature_network("inception", tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="Unknown feature network"):
        create_feature_network("vgg")


def test_bad_images_are_named(effnet_features):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        effnet_features.extract(torch.full((2, 3, 32, 32), 2.0))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        effnet_features.extract(torch.rand(3, 32, 32))

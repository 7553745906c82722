"""The ``anomalyhybrid`` synthesizer beyond the shared contract suite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from anomalysynth.synth import create_synthesizer
from tests.conftest import photo_batch
from tests.gan.tiny_hybrid import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("hybrid"))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_without_a_checkpoint_the_error_says_how_to_train_one():
    with pytest.raises(ValueError, match=r"lightning fit -c configs/anomalyhybrid\.yaml.*checkpoint="):
        create_synthesizer("anomalyhybrid")


def test_a_folder_depth_checkpoint_needs_another_depth_source(tmp_path):
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    np.save(depth_dir / "000.npy", np.ones((4, 4)))
    path = save_tiny_checkpoint(tmp_path, depth_source="folder", depth_dir=str(depth_dir))
    with pytest.raises(ValueError, match="without file names"):
        create_synthesizer("anomalyhybrid", checkpoint=path)
    synth = create_synthesizer("anomalyhybrid", checkpoint=path, depth_source="pseudo")
    assert synth(photo_batch(1, 3, size=32), generator=gen(0)).label.tolist() == [1]


@pytest.mark.parametrize("mode", ["remove", "replace", "merge", "tps", "global"])
def test_each_mode_by_name_changes_only_its_region(checkpoint, mode):
    synth = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, manipulations=mode)
    images = photo_batch(2, 3, size=32)
    out = synth(images, generator=gen(1))
    assert synth.manipulations == [mode] and out.label.tolist() == [1, 1]
    changed = (out.image != images).any(dim=1, keepdim=True)
    assert torch.equal(changed, out.mask > 0)  # the mask is exactly where the image changed
    area = out.mask.mean(dim=(1, 2, 3))
    if mode == "global":
        assert (area > 0.5).all()  # the whole image is repainted
    else:
        assert (area <= 0.06 * 1.3 + 0.02).all()  # inside the drawn region only


def test_mask_lies_inside_the_drawn_ellipse(checkpoint):
    from anomalysynth.gan.regions import ellipse_region, region_centre

    synth = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, manipulations="remove")
    images = photo_batch(1, 3, size=32)
    out = synth(images, generator=gen(2))
    p = out.params
    centre = region_centre(torch.ones(1, 1, 32, 32), p["centre_u"])
    region = ellipse_region(centre, p["area_ratio"], p["aspect"], p["angle"], 32, 32)
    assert out.mask.sum() > 0 and (out.mask <= region).all()


def test_strength_is_the_fusion_scale_and_zero_changes_nothing(checkpoint):
    images = photo_batch(2, 3, size=32)
    half = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, fusion_scale=(0.5, 0.5))(images, generator=gen(0))
    full = create_synthesizer("anomalyhybrid", checkpoint=checkpoint)(images, generator=gen(0))
    assert half.strength.tolist() == [0.5, 0.5] and full.strength.tolist() == [1.0, 1.0]
    inside = (half.mask > 0) & (full.mask > 0)
    weaker = (half.image - images).abs().expand_as(images)[inside.expand_as(images)]
    stronger = (full.image - images).abs()[inside.expand_as(images)]
    assert weaker.mean() < stronger.mean()
    none = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, fusion_scale=(0.0, 0.0))(images, generator=gen(0))
    assert torch.equal(none.image, images) and none.label.tolist() == [0, 0] and none.strength.tolist() == [0, 0]


def test_references_from_a_folder_and_other_sizes(checkpoint, tmp_path):
    for i in range(3):
        Image.fromarray((photo_batch(1, 3, size=40)[0] * 255).byte().permute(1, 2, 0).numpy()).save(
            tmp_path / f"{i}.png"
        )
    synth = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, reference_dir=tmp_path, manipulations="replace")
    images = photo_batch(4, 3, size=48)[..., :40]  # 48x40: run at the checkpoint's 32-px scale and resized back
    out = synth(images, generator=gen(3))
    assert set(out.params["reference_index"].tolist()) <= {0, 1, 2}
    assert out.image.shape == images.shape and out.label.sum() >= 1
    assert torch.equal(out.image[(out.mask == 0).expand_as(images)], images[(out.mask == 0).expand_as(images)])
    assert "reference_files" in synth.config() and len(synth.config()["checkpoint_sha256"]) == 64


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"manipulations": ["crack"]}, "manipulations"),
        ({"decoder": "both"}, "decoder"),
        ({"region_area": (0.0, 0.1)}, "region_area"),
        ({"fusion_scale": (0.5, 1.5)}, "fusion_scale"),
        ({"reference_dir": "/no/such/folder"}, "reference_dir"),
    ],
)
def test_bad_arguments_are_rejected(checkpoint, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_synthesizer("anomalyhybrid", checkpoint=checkpoint, **kwargs)


def test_config_rebuilds_the_same_synthesizer_for_the_cache(checkpoint):
    from anomalysynth.synth import from_config

    synth = create_synthesizer("anomalyhybrid", checkpoint=checkpoint, manipulations=["remove", "tps"])
    again = from_config(synth.config())
    images = photo_batch(2, 3, size=32)
    a, b = synth(images, generator=gen(7)), again(images, generator=gen(7))
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)

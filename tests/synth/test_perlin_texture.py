"""PerlinTextureBlend options beyond the shared contract."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from anomalysynth.synth import PerlinTextureBlend


@pytest.fixture
def white_texture(tmp_path):
    Image.new("L", (32, 32), 255).save(tmp_path / "white.png")
    return tmp_path


def half_black_half_white(batch: int) -> torch.Tensor:
    images = torch.zeros(batch, 3, 48, 64)
    images[..., 32:] = 1.0  # the right half already looks like the texture
    return images


@pytest.mark.parametrize("kernels", ["1", "0"])
def test_min_change_keeps_only_the_pixels_that_changed(white_texture, monkeypatch, kernels):
    monkeypatch.setenv("ANOMALYSYNTH_KERNELS", kernels)
    images = half_black_half_white(12)
    kwargs = {"texture_dir": white_texture, "opacity": (1.0, 1.0), "augment": False, "perlin_scale": (1, 3)}
    full = PerlinTextureBlend(**kwargs)(images, generator=torch.Generator().manual_seed(0))
    honest = PerlinTextureBlend(**kwargs, min_change=0.5)(images, generator=torch.Generator().manual_seed(0))
    assert bool(full.mask[..., 32:].any())  # the plain Perlin mask also covers the unchanged half
    # with min_change the mask is the Perlin mask on the half that turned white, and nothing else
    expected = full.mask.clone()
    expected[..., 32:] = 0
    assert torch.equal(honest.mask, expected)
    assert torch.equal(honest.image, full.image)  # the dropped pixels were unchanged anyway
    assert torch.equal(honest.label, (expected.flatten(1).amax(1) > 0).long())
    outside = (honest.mask == 0).expand_as(images)
    assert torch.equal(honest.image[outside], images[outside])


def test_min_change_restores_small_changes_and_labels_empty_masks_normal(white_texture):
    images = torch.full((16, 1, 40, 40), 0.9)  # the white texture changes every pixel by 0.1 at most
    synth = PerlinTextureBlend(texture_dir=white_texture, augment=False, min_change=0.2)
    out = synth(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.image, images)
    assert not bool(out.mask.any())
    assert out.label.tolist() == [0] * 16
    assert out.strength.tolist() == [0.0] * 16
    replay = synth(images, params=out.params)
    assert torch.equal(replay.image, out.image) and torch.equal(replay.mask, out.mask)


def test_min_change_outside_zero_one_is_rejected():
    with pytest.raises(ValueError, match="min_change"):
        PerlinTextureBlend(min_change=1.5)


@pytest.mark.parametrize("kernels", ["1", "0"])
@pytest.mark.parametrize("channels", [3, 1])
def test_negative_source_flips_the_image_inside_the_mask(monkeypatch, kernels, channels):
    monkeypatch.setenv("ANOMALYSYNTH_KERNELS", kernels)
    images = (torch.rand(6, channels, 40, 56) > 0.5).float()  # a near-binary image, as a circuit board
    synth = PerlinTextureBlend(texture_source="negative", opacity=(1.0, 1.0), augment=False, min_change=0.5)
    out = synth(images, generator=torch.Generator().manual_seed(1))
    inside = (out.mask > 0).expand_as(images)
    assert bool(inside.any()) and out.label.tolist() == [1] * 6
    assert torch.equal(out.image[inside], 1.0 - images[inside])
    assert torch.equal(out.image[~inside], images[~inside])
    replay = synth(images, params=out.params)
    assert torch.equal(replay.image, out.image)


def test_texture_source_is_checked(white_texture):
    with pytest.raises(ValueError, match="texture_source"):
        PerlinTextureBlend(texture_source="inverted")
    with pytest.raises(ValueError, match="texture_dir"):
        PerlinTextureBlend(texture_source="negative", texture_dir=white_texture)

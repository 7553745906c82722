"""Foreground masks."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.synth import create_synthesizer
from anomalysynth.synth.foreground import foreground_mask, otsu_threshold, triangle_threshold


def disk_image(bright_object: bool = True) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disk = (((yy - 32) ** 2 + (xx - 28) ** 2) < 15**2).float()
    noise = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) * 0.1
    img = 0.15 + 0.6 * disk + noise if bright_object else 0.85 - 0.6 * disk - noise
    return img.clamp(0, 1).view(1, 1, 64, 64), disk.view(1, 1, 64, 64)


@pytest.mark.parametrize("method", ["otsu", "triangle"])
def test_thresholds_find_the_object(method):
    img, disk = disk_image()
    mask = foreground_mask(img, method=method)
    agreement = (mask == disk).float().mean()
    assert agreement > 0.97


def test_invert_handles_dark_objects_and_ones_is_everything():
    img, disk = disk_image(bright_object=False)
    assert (foreground_mask(img, "otsu", invert=True) == disk).float().mean() > 0.97
    assert foreground_mask(img, "ones").min() == 1


def test_thresholds_lie_between_the_modes():
    img, _ = disk_image()
    for threshold in (otsu_threshold(img), triangle_threshold(img)):
        assert 0.25 < float(threshold) < 0.75


def test_rgb_and_morphology_remove_specks():
    img, _disk = disk_image()
    img = img.clone()
    img[..., 5, 5] = 1.0  # an isolated bright pixel
    mask = foreground_mask(img.expand(1, 3, 64, 64).contiguous(), "otsu")
    assert mask[..., 5, 5] == 0


def test_synthesizer_with_automatic_foreground_stays_on_the_object():
    img, _disk = disk_image()
    synth = create_synthesizer("perlin_texture", foreground="otsu")
    out = synth(img.repeat(4, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    fg = foreground_mask(img, "otsu")
    assert out.mask[(fg == 0).expand_as(out.mask)].max() == 0


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="foreground"):
        create_synthesizer("cutpaste", foreground="kmeans")
    with pytest.raises(ValueError, match="otsu"):
        foreground_mask(torch.rand(1, 1, 8, 8), method="kmeans")

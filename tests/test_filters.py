"""The shared Gaussian filter."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anomalysynth.filters import gaussian_blur


def test_gaussian_blur_matches_torchvision_inside_and_keeps_constants():
    from torchvision.transforms.v2.functional import gaussian_blur as tv_blur

    maps = torch.rand(3, 2, 40, 50)
    out = gaussian_blur(maps, 1.5)
    reference = tv_blur(maps, kernel_size=[13, 13], sigma=[1.5, 1.5])  # 2 * round(4 * 1.5) + 1
    assert out.shape == maps.shape
    assert torch.allclose(out[..., 6:-6, 6:-6], reference[..., 6:-6, 6:-6], atol=1e-6)  # borders are padded differently
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 5, 7), 0.3), 4.0), torch.full((1, 1, 5, 7), 0.3))
    # a single bright pixel spreads out and keeps its mass away from the borders
    spike = torch.zeros(1, 1, 41, 41)
    spike[..., 20, 20] = 1.0
    spread = gaussian_blur(spike, 3.0)
    assert spread.max() < 0.05 and abs(float(spread.sum()) - 1.0) < 1e-5


def test_two_passes_equal_the_two_dimensional_kernel_with_reflected_borders():
    maps = torch.rand(2, 1, 9, 11)
    g = torch.exp(-(torch.tensor([-1.0, 0.0, 1.0]) ** 2) / (2 * 0.5**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).view(1, 1, 3, 3)
    reference = F.conv2d(F.pad(maps, (1, 1, 1, 1), mode="reflect"), kernel)
    assert torch.allclose(gaussian_blur(maps, 0.5, kernel_size=3, padding="reflect"), reference, atol=1e-6)


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(torch.rand(1, 1, 8, 8), 0.0)
    with pytest.raises(ValueError, match="kernel_size"):
        gaussian_blur(torch.rand(1, 1, 8, 8), 1.0, kernel_size=4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        gaussian_blur(torch.rand(8, 8), 1.0)

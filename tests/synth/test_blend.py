"""Blending properties."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomalysynth.synth.blend import blend


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), opacity=st.floats(0, 1), channels=st.sampled_from([1, 3]))
def test_blend_is_a_convex_combination_inside_the_mask_and_identity_outside(seed, opacity, channels):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, channels, 16, 16, generator=g)
    source = torch.rand(2, channels, 16, 16, generator=g)
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    out = blend(image, source, mask, torch.tensor([opacity, opacity]))
    outside = (mask == 0).expand_as(image)
    assert torch.equal(out[outside], image[outside])
    lo, hi = torch.minimum(image, source), torch.maximum(image, source)
    assert (out >= lo - 1e-6).all() and (out <= hi + 1e-6).all()
    expected = (1 - mask) * image + (1 - opacity) * mask * image + opacity * mask * source
    assert torch.allclose(out, expected, atol=1e-6)


def test_full_opacity_replaces_and_zero_opacity_keeps():
    image, source = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    mask = torch.ones(1, 1, 8, 8)
    assert torch.allclose(blend(image, source, mask, torch.tensor([1.0])), source)
    assert torch.equal(blend(image, source, mask, torch.tensor([0.0])), image)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), soft=st.floats(0, 1))
def test_soft_masks_scale_the_opacity(seed, soft):
    g = torch.Generator().manual_seed(seed)
    image, source = torch.rand(1, 1, 4, 4, generator=g), torch.rand(1, 1, 4, 4, generator=g)
    out = blend(image, source, torch.full((1, 1, 4, 4), soft), torch.tensor([0.5]))
    assert torch.allclose(out, image + 0.5 * soft * (source - image), atol=1e-6)

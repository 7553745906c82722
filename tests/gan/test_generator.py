"""The generator's shapes and its fusion output, and the discriminator's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalysynth.gan import AnomalyHybridGenerator, MultiscaleDiscriminator


def tiny_generator(channels: int = 3) -> AnomalyHybridGenerator:
    torch.manual_seed(0)
    return AnomalyHybridGenerator(channels, width=4, num_downsampling=2, num_resnet_blocks=1).eval()


def inputs(b: int = 2, c: int = 3, size: int = 16):
    g = torch.Generator().manual_seed(1)
    return (
        torch.rand(b, c, size, size, generator=g),
        torch.rand(b, 1, size, size, generator=g),
        torch.rand(b, 1, size, size, generator=g),
    )


@pytest.mark.parametrize("channels", [3, 1])
def test_both_decoders_have_image_anomaly_and_fusion_outputs(channels):
    g = tiny_generator(channels)
    content, depth, edge = inputs(c=channels, size=24)
    with torch.no_grad():
        outs = g(content, depth, edge)
    assert len(outs) == 2
    for out in outs:
        assert out.image.shape == content.shape and out.anomaly.shape == content.shape
        assert out.fusion.shape == (2, 1, 24, 24)
        for t in (out.image, out.anomaly, out.fusion):
            assert t.min() >= 0 and t.max() <= 1
    # the depth- and edge-controlled decoders are different networks
    assert not torch.equal(outs[0].image, outs[1].image)


def test_output_is_fusion_of_anomaly_and_content():
    g = tiny_generator()
    content, depth, edge = inputs()
    with torch.no_grad():
        for out in g(content, depth, edge):
            m, a, c = out.fusion.numpy(), out.anomaly.numpy(), content.numpy()
            expected = m * a + (1.0 - m) * c  # numpy, broadcasting the one-channel map
            np.testing.assert_allclose(out.image.numpy(), expected, atol=1e-6)


def test_zero_fusion_map_passes_the_content_through():
    g = tiny_generator()
    with torch.no_grad():
        g.depth_decoder.fusion_head[1].weight.zero_()
        g.depth_decoder.fusion_head[1].bias.fill_(-200.0)  # sigmoid underflows to exactly 0
    content, depth, edge = inputs()
    with torch.no_grad():
        out = g.decode(content, depth, edge, "depth")
    assert torch.equal(out.fusion, torch.zeros_like(out.fusion))
    assert torch.equal(out.image, content)


def test_decode_matches_forward():
    g = tiny_generator()
    content, depth, edge = inputs()
    with torch.no_grad():
        d, e = g(content, depth, edge)
        assert torch.equal(g.decode(content, depth, edge, "depth").image, d.image)
        assert torch.equal(g.decode(content, depth, edge, "edge").image, e.image)


def test_bad_shapes_are_rejected():
    g = tiny_generator()
    content, depth, edge = inputs(size=18)
    with pytest.raises(ValueError, match="divisible by 4"):
        g(content, depth, edge)
    content, depth, edge = inputs()
    with pytest.raises(ValueError, match=r"depth, edge \(B, 1, H, W\)"):
        g(content, depth.expand(-1, 2, -1, -1), edge)
    with pytest.raises(ValueError, match="decoder"):
        g.decode(content, depth, edge, "both")
    with pytest.raises(ValueError, match="image_channels"):
        AnomalyHybridGenerator(image_channels=2)


def test_multiscale_discriminator_returns_features_per_scale():
    d = MultiscaleDiscriminator(2, 3, width=4, num_layers=2, num_scales=3)
    out = d(torch.rand(2, 2, 32, 32), torch.rand(2, 3, 32, 32))
    assert len(out) == 3
    assert [len(f) for f in out] == [4, 4, 4]
    assert all(f[-1].shape[:2] == (2, 1) for f in out)
    # each scale sees a coarser input, so its patch map is smaller
    assert out[0][-1].shape[-1] > out[1][-1].shape[-1] > out[2][-1].shape[-1]
    with pytest.raises(ValueError, match="condition with 2"):
        d(torch.rand(2, 1, 32, 32), torch.rand(2, 3, 32, 32))

"""RealNet's discriminator: RRS and the (projected) features it sees."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.models.realnet import RealNetModel, residual_selection
from tests.models.tiny_realnet import CHANNELS, TinyExtractor


def test_rrs_keeps_the_top_channels_by_max_and_by_mean():
    b, size = 2, (4, 4)
    residual = torch.zeros(b, 6, *size)
    residual[:, 0, 0, 0] = 10.0  # high max, low mean
    residual[:, 1] = 2.0  # high mean
    residual[:, 2, 1, 1] = 5.0  # second max
    residual += 0.01 * torch.arange(6).view(1, 6, 1, 1)
    kept = residual_selection([residual], ratio=4 / 6, norm=lambda x: x)
    assert kept.shape == (b, 4, *size)
    assert torch.equal(kept[:, 0], residual[:, 0]) and torch.equal(kept[:, 1], residual[:, 2])
    assert torch.equal(kept[:, 2], residual[:, 1])


def test_discriminator_features_hand_the_features_to_the_discriminator():
    torch.manual_seed(0)
    plain = RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10)).eval()
    model = RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_features=True).eval()
    kept = plain.discriminator[0].in_channels
    assert model.discriminator[0].in_channels == kept + 4 + 6 + 8 + 10
    images = torch.rand(2, 3, 67, 93)
    with torch.no_grad():
        out = model(images)
        assert out.anomaly_map.shape == (2, 1, 67, 93)
        features = model.select(model.extract(images))
        residuals = [(f - g(f)).pow(2) for f, g in zip(features, model.reconstruction, strict=True)]
        selected = residual_selection(residuals, model.rrs_ratio, norm=model.rrs_norm)
        upsampled = [torch.nn.functional.interpolate(f, size=selected.shape[-2:], mode="bilinear") for f in features]
        logits = model.discriminator(torch.cat([selected, *upsampled], dim=1))
        expected = torch.nn.functional.interpolate(logits, size=(67, 93), mode="bilinear").softmax(1)[:, 1:2]
        assert torch.allclose(out.anomaly_map, expected, atol=1e-6)
        # the features do reach the discriminator: without their weights the map changes
        model.discriminator[0].weight[:, kept:] = 0
        assert not torch.allclose(model(images).anomaly_map, out.anomaly_map, atol=1e-4)


def test_discriminator_feature_dims_project_the_features_first():
    torch.manual_seed(0)
    plain = RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10)).eval()
    model = RealNetModel(
        TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_features=True, discriminator_feature_dims=5
    ).eval()
    kept = plain.discriminator[0].in_channels
    assert model.feature_projection is not None and model.feature_projection.in_channels == 4 + 6 + 8 + 10
    assert model.discriminator[0].in_channels == kept + 5
    images = torch.rand(2, 3, 67, 93)
    with torch.no_grad():
        out = model(images)
        features = model.select(model.extract(images))
        residuals = [(f - g(f)).pow(2) for f, g in zip(features, model.reconstruction, strict=True)]
        selected = residual_selection(residuals, model.rrs_ratio, norm=model.rrs_norm)
        upsampled = [torch.nn.functional.interpolate(f, size=selected.shape[-2:], mode="bilinear") for f in features]
        projected = model.feature_projection(torch.cat(upsampled, dim=1))
        logits = model.discriminator(torch.cat([selected, projected], dim=1))
        expected = torch.nn.functional.interpolate(logits, size=(67, 93), mode="bilinear").softmax(1)[:, 1:2]
        assert torch.allclose(out.anomaly_map, expected, atol=1e-6)
    with pytest.raises(ValueError, match="discriminator_features=True"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_feature_dims=5)
    with pytest.raises(ValueError, match=">= 1"):
        RealNetModel(
            TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_features=True, discriminator_feature_dims=0
        )
    # as many channels as are selected, or more: the features go in unprojected
    wide = RealNetModel(
        TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_features=True, discriminator_feature_dims=29
    )
    assert wide.feature_projection is None and wide.discriminator[0].in_channels == kept + 28

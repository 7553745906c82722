"""RealNet's features: the folded extractor, selection, standardisation, default dims."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from anomalysynth.models.realnet import RealNetModel, default_dims
from anomalysynth.models.realnet.features import FeatureStatistics
from tests.models.tiny_realnet import CHANNELS, ExtractorWithBatchNorm, TinyExtractor, tiny_model


def test_folded_backbone_gives_the_same_output_and_follows_new_weights():
    torch.manual_seed(0)
    model = RealNetModel(ExtractorWithBatchNorm(), CHANNELS, (4, 6, 8, 10)).eval()
    plain = RealNetModel(ExtractorWithBatchNorm(), CHANNELS, (4, 6, 8, 10), fold_batchnorms=False).eval()
    plain.load_state_dict(model.state_dict())
    assert not any(k.startswith("_folded") for k in model.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x).anomaly_map, plain(x).anomaly_map, atol=1e-5)
        first = model(x).features[0].clone()
        # loading other weights (a checkpoint) must re-fold, not reuse the stale copy
        other = RealNetModel(ExtractorWithBatchNorm(), CHANNELS, (4, 6, 8, 10)).eval()
        model.load_state_dict(other.state_dict())
        assert not torch.allclose(model(x).features[0], first)
        assert torch.allclose(model(x).features[0], other(x).features[0], atol=1e-5)


def test_folded_copy_is_not_pickled_or_traced():
    torch.manual_seed(0)
    model = RealNetModel(ExtractorWithBatchNorm(), CHANNELS, (4, 6, 8, 10)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).anomaly_map
    assert len(model._folded) == 1
    buffer = io.BytesIO()
    torch.save(model, buffer)  # what a torch export does
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)
    assert restored._folded == {} and len(model._folded) == 1
    fresh = RealNetModel(ExtractorWithBatchNorm(), CHANNELS, (4, 6, 8, 10)).eval()
    fresh.load_state_dict(model.state_dict())
    traced = torch.jit.trace(fresh, x, strict=False, check_trace=False)
    assert fresh._folded == {}  # tracing runs the plain extractor and builds no copy
    assert torch.allclose(traced(x)[1], expected, atol=1e-5)


def test_feature_statistics_standardise_the_selected_features():
    model = tiny_model()
    x = torch.rand(6, 3, 64, 64)
    raw = model.extract(x)
    means = [f.mean(dim=(0, 2, 3)) for f in raw]
    stds = [f.std(dim=(0, 2, 3), unbiased=False).clamp_min(1e-3) for f in raw]
    model.set_feature_statistics(means, stds)
    assert bool(model.feature_stats_done)
    for f, s, m, sd, out in zip(raw, model.selections, means, stds, model.select(raw), strict=True):
        expected = (f[:, s] - m[s].view(1, -1, 1, 1)) / sd[s].view(1, -1, 1, 1)
        assert torch.allclose(out, expected, atol=1e-5)
        assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(out.shape[1]), atol=1e-3)
    with pytest.raises(ValueError, match="positive stds"):
        model.set_feature_statistics([torch.zeros(c) for c in CHANNELS], [torch.zeros(c) for c in CHANNELS])
    with pytest.raises(ValueError, match="Expected 4 mean"):
        model.set_feature_statistics([torch.zeros(8)], [torch.ones(8)])


def test_default_dims_follow_one_rule_by_stride():
    # the README's numbers: EfficientNet-Lite0 keeps 24, 40, 56, 40 of 24, 40, 112, 320 at strides 4..32
    assert default_dims((24, 40, 112, 320), (4, 8, 16, 32)) == [24, 40, 56, 40]
    # a stride outside RealNet's four keeps every channel; the same level at another stride keeps the same
    assert default_dims((16, 24, 40, 112, 320), (2, 4, 8, 16, 32)) == [16, 24, 40, 56, 40]
    # at least 8 channels, never more than the level has
    assert default_dims((20, 4), (32, 32)) == [8, 4]
    with pytest.raises(ValueError, match="one stride per level"):
        default_dims((24, 40), (4,))
    with pytest.raises(ValueError, match="`dims`, or the levels' `strides`"):
        RealNetModel(TinyExtractor(), CHANNELS)
    assert RealNetModel(TinyExtractor(), CHANNELS, strides=(4, 8, 16, 32)).dims == [8, 12, 8, 8]


def test_feature_statistics_match_numpy_over_all_batches():
    g = torch.Generator().manual_seed(0)
    batches = [[3 + 2 * torch.randn(n, 3, 5, 4, generator=g), torch.randn(n, 2, 2, 2, generator=g)] for n in (2, 3)]
    batches[0][1][:, 1] = 7.0  # a constant channel
    batches[1][1][:, 1] = 7.0
    statistics = FeatureStatistics()
    for batch in batches:
        statistics.update(batch)
    means, stds = statistics.result()
    for k in range(2):
        values = np.concatenate([b[k].numpy() for b in batches]).astype(np.float64)
        per_channel = values.transpose(1, 0, 2, 3).reshape(values.shape[1], -1)
        expected_std = per_channel.std(axis=1)
        expected_std[expected_std < 1e-6] = 1.0  # a constant channel keeps std 1
        np.testing.assert_allclose(means[k].numpy(), per_channel.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(stds[k].numpy(), expected_std, rtol=1e-4)
    assert float(stds[1][1]) == 1.0
    with pytest.raises(ValueError, match="No feature batches"):
        FeatureStatistics().result()

"""RealNet's scoring: the map, the normality terms and the image score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomalysynth.filters import gaussian_blur
from anomalysynth.models.realnet import RealNetModel
from anomalysynth.models.realnet.scoring import AnomalyScoring, NormalityTerm, mix_normality, smoothed_map
from tests.models.tiny_realnet import CHANNELS, TinyExtractor, tiny_model


def test_score_pool_sets_the_box_the_image_score_averages():
    torch.manual_seed(0)
    model = RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), score_pool=1).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert torch.equal(out.pred_score, out.anomaly_map.flatten(1).amax(dim=1))
    with pytest.raises(ValueError, match="score_pool"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), score_pool=0)


def test_map_sigma_smooths_the_map_but_not_the_image_score():
    plain = tiny_model().eval()
    smooth = tiny_model().eval()
    smooth.map_sigma = 2.0
    images = torch.rand(2, 3, 45, 61)
    with torch.no_grad():
        a, b = plain(images), smooth(images)
    assert b.anomaly_map.shape == a.anomaly_map.shape == (2, 1, 45, 61)
    assert torch.equal(b.pred_score, a.pred_score)  # taken from the unsmoothed map
    assert torch.allclose(b.anomaly_map, gaussian_blur(a.anomaly_map, 2.0))
    assert not torch.allclose(b.anomaly_map, a.anomaly_map, atol=1e-4)
    with pytest.raises(ValueError, match="map_sigma"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), map_sigma=-1.0)


def _residual_map_by_hand(model: RealNetModel, images: torch.Tensor) -> torch.Tensor:

    features = model.select(model.extract(images))
    maps = []
    for k, (f, g) in enumerate(zip(features, model.reconstruction, strict=True)):
        level = (f - g(f)).pow(2).mean(dim=1, keepdim=True) / model.residual_scale[k]
        maps.append(F.interpolate(level, size=images.shape[-2:], mode="bilinear", align_corners=False))
    return sum(maps) / len(maps)


def test_residual_weight_adds_the_scaled_residual_to_the_map_and_the_score():
    model = tiny_model().eval()
    with torch.no_grad():
        for g in model.reconstruction:
            g.out[-1].weight.normal_(0, 0.1)  # a reconstruction that is not all zeros
    model.residual_scale.copy_(torch.tensor([0.5, 1.0, 2.0, 4.0]))
    model.score_pool = 1
    images = torch.rand(2, 3, 53, 70)
    with torch.no_grad():
        plain = model(images)
        model.residual_weight = 0.25
        mixed = model(images)
        residual = _residual_map_by_hand(model, images)
        model.residual_weight = 1.0
        residual_only = model(images)
    assert mixed.anomaly_map.shape == plain.anomaly_map.shape == (2, 1, 53, 70)
    assert torch.allclose(mixed.anomaly_map, 0.75 * plain.anomaly_map + 0.25 * residual / (1 + residual), atol=1e-6)
    assert float(mixed.anomaly_map.min()) >= 0 and float(mixed.anomaly_map.max()) <= 1  # still in [0, 1]
    assert torch.allclose(residual_only.anomaly_map, residual / (1 + residual), atol=1e-6)
    assert torch.allclose(mixed.pred_score, mixed.anomaly_map.flatten(1).amax(dim=1))  # scored on the sum
    assert torch.equal(mixed.logits, plain.logits)  # the discriminator is untouched
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="residual_weight"):
            RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), residual_weight=bad)


def test_score_topk_scores_by_the_mean_of_the_largest_values():
    model = tiny_model().eval()
    model.map_sigma = 2.0
    images = torch.rand(2, 3, 48, 40)
    with torch.no_grad():
        model.score_topk = 0
        raw = model(images)
        unsmoothed = raw.logits.softmax(dim=1)[:, 1]
        model.score_topk = 7
        top = model(images)
        model.score_topk = 10_000  # more than the map's 48 x 40 pixels: the mean of all of them
        everything = model(images)
    assert torch.allclose(top.pred_score, unsmoothed.flatten(1).topk(7, dim=1).values.mean(dim=1))
    assert torch.allclose(everything.pred_score, unsmoothed.flatten(1).mean(dim=1))
    assert torch.equal(top.anomaly_map, raw.anomaly_map)  # only the score changes
    for bad in (-1, 2.5):
        with pytest.raises(ValueError, match="score_topk"):
            RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), score_topk=bad)


def test_normality_terms_mix_into_the_probability_by_their_weights():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(2, 1, 6, 5, generator=g)
    r1, r2 = 3 * torch.rand(2, 1, 6, 5, generator=g), 10 * torch.rand(2, 1, 6, 5, generator=g)
    mixed = mix_normality(p, [NormalityTerm(0.2, r1), NormalityTerm(0.0, r1 * 100), NormalityTerm(0.3, r2)])
    np.testing.assert_allclose(
        mixed.numpy(), (0.5 * p + 0.2 * r1 / (1 + r1) + 0.3 * r2 / (1 + r2)).numpy(), rtol=1e-6, atol=1e-7
    )
    assert float(mixed.min()) >= 0 and float(mixed.max()) <= 1
    assert mix_normality(p, []) is p
    with pytest.raises(ValueError, match="sum to at most 1"):
        mix_normality(p, [NormalityTerm(0.6, r1), NormalityTerm(0.6, r2)])


def test_a_term_with_its_own_sigma_is_smoothed_by_it_and_the_rest_by_the_maps():
    g = torch.Generator().manual_seed(1)
    p = torch.rand(1, 1, 21, 23, generator=g)
    spike = torch.zeros(1, 1, 21, 23)
    spike[0, 0, 10, 11] = 3.0  # r / (1 + r) = 0.75 at one pixel, 0 elsewhere
    other = 2 * torch.rand(1, 1, 21, 23, generator=g)
    shared = [NormalityTerm(0.2, spike), NormalityTerm(0.1, other)]
    # no term with a sigma of its own (or one equal to the map's): the whole mix smoothed, as before
    plain = gaussian_blur(mix_normality(p, shared), 2.0)
    assert torch.allclose(smoothed_map(p, shared, 2.0), plain)
    same = [NormalityTerm(0.2, spike, None, 2.0), NormalityTerm(0.1, other)]
    assert torch.allclose(smoothed_map(p, same, 2.0), plain)
    # the spike unsmoothed (sigma 0): it adds 0.2 * 0.75 at its pixel and nothing anywhere else
    own = smoothed_map(p, [NormalityTerm(0.2, spike, None, 0.0), NormalityTerm(0.1, other)], 2.0)
    without = gaussian_blur(0.7 * p + 0.1 * other / (1 + other), 2.0)
    difference = own - without
    assert abs(float(difference[0, 0, 10, 11]) - 0.15) < 1e-6
    difference[0, 0, 10, 11] = 0
    assert float(difference.abs().max()) < 1e-6
    # the map stays in [0, 1]; weights above 1 are refused on this path too
    assert float(own.min()) >= 0 and float(own.max()) <= 1
    with pytest.raises(ValueError, match="sum to at most 1"):
        smoothed_map(p, [NormalityTerm(0.6, spike, None, 0.0), NormalityTerm(0.6, other)], 2.0)


def test_gaussian_map_sigma_is_checked_and_settable():
    with pytest.raises(ValueError, match="gaussian_map_sigma"):
        AnomalyScoring(gaussian_map_sigma=-1.0)
    assert AnomalyScoring().gaussian_map_sigma is None
    model = tiny_model()
    model.gaussian_map_sigma = 0.0
    assert model.scoring.gaussian_map_sigma == 0.0


def test_scoring_settings_live_in_one_place_and_are_checked():
    model = tiny_model(score_pool=4, residual_weight=0.1)
    assert (model.scoring.score_pool, model.scoring.residual_weight) == (4, 0.1)
    model.score_topk = 3  # a saved model is re-scored by setting these on it
    assert model.scoring.score_topk == 3
    with pytest.raises(ValueError, match="score_pool"):
        AnomalyScoring(score_pool=0)


def test_score_sigma_smooths_the_map_the_image_score_reads():
    ndimage = pytest.importorskip("scipy.ndimage")
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 40, 36, generator=g)
    p = logits.softmax(dim=1)[:, 1:2]
    scoring = AnomalyScoring(score_topk=20, map_sigma=2.0, score_sigma=3.0)
    anomaly_map, score = scoring(logits)
    # scipy's filter with the same truncation (4 sigma) and edge rule (replicate = "nearest")
    reference = np.stack([ndimage.gaussian_filter(p[i, 0].double().numpy(), 3.0, mode="nearest") for i in range(2)])
    expected = np.sort(reference.reshape(2, -1), axis=1)[:, -20:].mean(axis=1)
    np.testing.assert_allclose(score.numpy(), expected, rtol=1e-5)
    assert torch.allclose(anomaly_map, gaussian_blur(p, 2.0))  # the returned map keeps map_sigma
    # one hot pixel against a dimmer 7x7 patch: the plain max picks the pixel, the smoothed score the patch
    spot = torch.zeros(2, 1, 40, 40)
    spot[0, 0, 10, 10] = 1.0
    spot[1, 0, 20:27, 20:27] = 0.6
    spot_logits = torch.cat([torch.zeros_like(spot), torch.logit(spot.clamp(1e-4, 1 - 1e-4))], dim=1)
    plain = AnomalyScoring(score_topk=1)(spot_logits)[1]
    smoothed = AnomalyScoring(score_topk=1, score_sigma=2.0)(spot_logits)[1]
    assert plain[0] > plain[1] and smoothed[1] > smoothed[0]
    with pytest.raises(ValueError, match="score_sigma"):
        AnomalyScoring(score_sigma=-1.0)


def test_an_off_neighbour_term_does_not_count_in_the_image_score_weights():
    # neighbour_weight 0 turns the term off, so its image-score weight is unused
    AnomalyScoring(neighbour_weight=0.0, score_neighbour_weight=0.6, score_gaussian_weight=0.5)
    with pytest.raises(ValueError, match="image score's normality weights"):
        AnomalyScoring(neighbour_weight=0.1, score_neighbour_weight=0.6, score_gaussian_weight=0.5)

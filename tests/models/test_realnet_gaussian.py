"""The per-position Gaussian normality term against an independent numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalysynth.filters import gaussian_blur
from anomalysynth.models.realnet import RealNetModel
from anomalysynth.models.realnet.gaussian import GaussianNormality
from tests.conftest import torch_threads


def _levels(n: int, generator: torch.Generator) -> list[torch.Tensor]:
    # two levels: 3 channels at 4x4 and 2 channels at 2x2 (brought to 4x4 by nearest)
    return [torch.randn(n, 3, 4, 4, generator=generator), torch.randn(n, 2, 2, 2, generator=generator)]


def test_matches_numpy_mahalanobis_per_position() -> None:
    generator = torch.Generator().manual_seed(0)
    term = GaussianNormality([0, 1], [3, 2], features=4, epsilon=0.01)
    train = term.embed(_levels(40, generator))
    term.fit(train)
    query_levels = _levels(3, generator)
    got = term(query_levels)[:, 0].numpy()

    fit = train.numpy()[[i for i in range(40) if i % 8 != 7]]  # every 8th image is held out for the scale
    held = train.numpy()[7::8]
    query = term.embed(query_levels).numpy()

    def mahalanobis(x: np.ndarray, y: int, z: int) -> np.ndarray:
        samples = fit[:, :, y, z].astype(np.float64)
        cov = np.cov(samples, rowvar=False) + 0.01 * np.eye(4)
        diff = x[:, :, y, z] - samples.mean(axis=0)
        return np.sqrt(np.einsum("bi,ij,bj->b", diff, np.linalg.inv(cov), diff))

    scale = np.mean([mahalanobis(held, y, z) for y in range(4) for z in range(4)])
    for y in range(4):
        for z in range(4):
            np.testing.assert_allclose(got[:, y, z], mahalanobis(query, y, z) / scale, rtol=1e-4)


def test_precision_of_many_channels_matches_numpy_with_two_threads() -> None:
    # oneMKL's batched LU (torch.linalg.inv) returns wrong inverses or fails for ~150+ channels
    # with two threads; each position's precision must still be the inverse of its covariance
    generator = torch.Generator().manual_seed(0)
    term = GaussianNormality([0], [176], features=176, epsilon=0.01)
    train = torch.randn(200, 176, 2, 1, generator=generator)
    with torch_threads(2):
        term.fit(train)
    fit = train.numpy()[[i for i in range(200) if i % 8 != 7]].astype(np.float64)
    for position, (y, z) in enumerate([(0, 0), (1, 0)]):
        cov = np.cov(fit[:, :, y, z], rowvar=False) + 0.01 * np.eye(176)
        np.testing.assert_allclose(term.precision[position].numpy(), np.linalg.inv(cov), rtol=1e-3, atol=1e-3)


def test_a_value_normal_elsewhere_is_anomalous_at_its_own_position() -> None:
    # position (0, 0) is always near +3, every other position near -3: a +3 elsewhere is an anomaly
    generator = torch.Generator().manual_seed(1)
    base = torch.full((32, 1, 4, 4), -3.0)
    base[:, :, 0, 0] = 3.0
    term = GaussianNormality([0], [1], features=1)
    term.fit(base + 0.1 * torch.randn(32, 1, 4, 4, generator=generator))
    query = torch.full((1, 1, 4, 4), -3.0)
    query[0, 0, 0, 0] = 3.0
    query[0, 0, 2, 2] = 3.0
    distance = term([query])[0, 0]
    assert distance[2, 2] > 10 * distance.flatten()[[1, 2, 3, 4, 5]].max()
    assert distance[0, 0] < 3


def test_state_dict_round_trip_and_errors() -> None:
    generator = torch.Generator().manual_seed(2)
    term = GaussianNormality([0, 1], [3, 2], features=5)
    with pytest.raises(RuntimeError, match="not fitted"):
        term(_levels(1, generator))
    term.fit(term.embed(_levels(16, generator)))
    other = GaussianNormality([0, 1], [3, 2], features=5)
    other.load_state_dict(term.state_dict())
    query = _levels(2, generator)
    torch.testing.assert_close(other(query), term(query))
    # features of another size are compared at the same relative positions: resampled to the fitted grid
    larger = [torch.nn.functional.interpolate(f, scale_factor=2, mode="bilinear") for f in query]
    resampled = term(larger)
    assert resampled.shape == (2, 1, 4, 4)
    embedding = torch.nn.functional.interpolate(term.embed(larger), size=(4, 4), mode="bilinear")
    torch.testing.assert_close(resampled[:, 0].flatten(1), term.distance(embedding) / term.scale)
    with pytest.raises(ValueError, match="`features` must lie in"):
        GaussianNormality([0], [3], features=4)


def test_realnet_mixes_the_gaussian_distance_into_its_map_and_score() -> None:
    from tests.models.tiny_realnet import tiny_model

    model = tiny_model(
        neighbour_weight=0.2,
        neighbour_levels=[1, 2],
        gaussian_weight=0.3,
        gaussian_levels=[0, 1],
        gaussian_features=6,
        score_gaussian_weight=0.5,
        score_topk=5,
    ).eval()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    raw = model.extract(images)
    assert model.nearest_neighbour is not None and model.gaussian is not None
    model.nearest_neighbour.fit(model.nearest_neighbour.embed(raw))
    out = model(images)
    probability = out.logits.softmax(dim=1)[:, 1:2]
    # not fitted yet: the Gaussian term stays out
    torch.testing.assert_close(out.anomaly_map, 0.8 * probability + 0.2 * _squash(model.nearest_neighbour(raw)))
    model.gaussian.fit(model.gaussian.embed(raw))
    out = model(images)
    n, g = _squash(model.nearest_neighbour(raw)), _squash(model.gaussian(raw))
    torch.testing.assert_close(out.anomaly_map, 0.5 * probability + 0.2 * n + 0.3 * g)
    expected = (0.3 * probability + 0.2 * n + 0.5 * g).flatten(1).sort(dim=1, descending=True).values[:, :5].mean(1)
    torch.testing.assert_close(out.pred_score, expected)
    # its own smoothing: the rest of the map smoothed by map_sigma, the Gaussian's part by gaussian_map_sigma
    model.map_sigma, model.gaussian_map_sigma = 3.0, 0.0
    out = model(images)
    rest = gaussian_blur(0.5 * probability + 0.2 * n, 3.0)
    torch.testing.assert_close(out.anomaly_map, rest + 0.3 * g)
    torch.testing.assert_close(out.pred_score, expected)  # the image score reads the unsmoothed map
    model.gaussian_map_sigma = 1.0
    torch.testing.assert_close(model(images).anomaly_map, rest + 0.3 * gaussian_blur(g, 1.0))
    with pytest.raises(ValueError, match="map's normality weights"):
        tiny_model(neighbour_weight=0.6, neighbour_levels=[1], gaussian_weight=0.5, gaussian_levels=[0])
    with pytest.raises(ValueError, match="gaussian_levels"):
        tiny_model(gaussian_weight=0.3)


def _squash(distance: torch.Tensor) -> torch.Tensor:
    d = torch.nn.functional.interpolate(distance, size=(64, 64), mode="bilinear", align_corners=False)
    return d / (1 + d)


def test_warm_up_fits_the_gaussian_and_an_older_checkpoint_loads_it_unfitted(tmp_path) -> None:
    from types import SimpleNamespace

    from tests.models.tiny_realnet import tiny_model, tiny_realnet

    def build():  # the Lightning module around a tiny torch model with the term on levels 0 and 1
        module = tiny_realnet(neighbour_weight=0.0)
        module.model = tiny_model(gaussian_weight=0.2, gaussian_levels=[0, 1], gaussian_features=5)
        return module

    module = build()
    generator = torch.Generator().manual_seed(4)
    loader = [SimpleNamespace(image=torch.rand(4, 3, 64, 64, generator=generator)) for _ in range(3)]
    module.warm_up(loader, progress=False)
    assert module.model.gaussian_ready and not module.model.neighbour_ready
    assert module.model.gaussian is not None and module.model.gaussian.mean.shape == (16 * 16, 5)
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("model.gaussian.")}
    older = build()
    older.load_state_dict(state)
    assert not older.model.gaussian_ready
    with pytest.warns(UserWarning, match="fit_gaussian"):
        older.on_test_start()
    older.fit_gaussian(loader, progress=False)
    torch.testing.assert_close(older.model.gaussian.precision, module.model.gaussian.precision)


def test_realnet_ships_the_gaussian_term_in_map_and_score() -> None:
    from anomalysynth.models import RealNet

    model = RealNet(evaluator=False).model
    assert (model.gaussian_weight, model.score_gaussian_weight) == (0.2, 0.55)
    assert (model.map_sigma, model.gaussian_map_sigma) == (4.0, 0.0)  # the Gaussian's stride-2 map unsmoothed
    assert model.gaussian is not None and len(model.gaussian.index) == 16 and model.gaussian.levels == [4]
    assert not model.gaussian_ready  # fitted in the warm-up
    paper = RealNet(evaluator=False, neighbour_weight=0.0, gaussian_weight=0.0, score_gaussian_weight=0.0).model
    assert paper.gaussian is None
    assert paper.extra_channels == [] and len(paper.extract(torch.rand(1, 3, 64, 64))) == 4  # no stride 2 extracted


def test_a_level_only_the_gaussian_reads_is_extracted_but_never_reconstructed() -> None:
    # the tiny extractor's first level (8 channels, stride 4) for the Gaussian alone; the other three reconstructed
    from tests.models.tiny_realnet import CHANNELS, DIMS, TinyExtractor

    torch.manual_seed(0)
    extractor = TinyExtractor()
    model = RealNetModel(
        extractor,
        CHANNELS[1:],
        DIMS[1:],
        gaussian_weight=0.3,
        gaussian_levels=[3],
        gaussian_features=CHANNELS[0],
        extra_channels=CHANNELS[:1],
        extractor_order=[1, 2, 3, 0],
    ).eval()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    reference = [f.detach() for f in extractor(images)]  # the extractor's own order, finest first
    raw = model.extract(images)
    assert [f.shape[1] for f in raw] == [12, 16, 20, 8]
    for got, want in zip(raw, [*reference[1:], reference[0]], strict=True):
        torch.testing.assert_close(got, want)
    assert [f.shape[1] for f in model.select(raw)] == list(DIMS[1:])  # the extra level is not selected
    assert len(model.reconstruction) == 3
    assert model.gaussian is not None
    torch.testing.assert_close(model.gaussian.embed(raw), reference[0])  # every channel of the finest level
    model.gaussian.fit(model.gaussian.embed(raw))
    out = model(images)
    probability = out.logits.softmax(dim=1)[:, 1:2]
    torch.testing.assert_close(out.anomaly_map, 0.7 * probability + 0.3 * _squash(model.gaussian(raw)))
    with pytest.raises(ValueError, match="extractor_order"):
        RealNetModel(extractor, CHANNELS[1:], DIMS[1:], extra_channels=CHANNELS[:1], extractor_order=[1, 2, 3, 3])
    with pytest.raises(ValueError, match="extractor_order"):
        RealNetModel(extractor, CHANNELS[1:], DIMS[1:], extra_channels=CHANNELS[:1])


def test_the_shipped_realnet_models_stride_2_for_the_gaussian_only() -> None:
    from anomalysynth.backbones import create_timm_model
    from anomalysynth.models import RealNet

    module = RealNet(evaluator=False, visualizer=False).eval()
    net = module.model
    assert net.channels == [24, 40, 112, 320] and net.extra_channels == [16]
    assert net.gaussian is not None and net.gaussian.levels == [4] and len(net.gaussian.index) == 16
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    pre = module._pre(images)
    raw = net.extract(pre)
    assert [f.shape[-1] for f in raw] == [64, 32, 16, 8, 128]  # 256 px (the pre-processor): strides 4-32, then 2
    # the stride-2 level is the backbone's own stride-2 block, as a separate extractor gives it
    stride2 = create_timm_model("efficientnet_lite0.offline_in1k", features_only=True, out_indices=[0]).eval()
    assert stride2.feature_info.reduction() == [2]
    with torch.no_grad():
        torch.testing.assert_close(raw[4], stride2(pre)[0], rtol=1e-4, atol=1e-4)
    assert len(module.afs_features(images)) == 4  # AFS and the statistics see the reconstructed levels only

"""RealNet: AFS, RRS, shapes, checkpoints, errors."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from anomalysynth.filters import gaussian_blur
from anomalysynth.models.realnet import RealNetModel, afs_channel_errors, residual_selection, select_channels
from anomalysynth.models.realnet.afs import AFSAccumulator

CHANNELS = (8, 12, 16, 20)


class TinyExtractor(nn.Module):
    """Four levels at strides 4, 8, 16, 32 with random weights."""

    def __init__(self) -> None:
        super().__init__()
        convs, cin = [], 3
        for i, c in enumerate(CHANNELS):
            convs.append(nn.Conv2d(cin, c, 3, stride=4 if i == 0 else 2, padding=1))
            cin = c
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            out.append(x)
        return out


def tiny_model(dims=(4, 6, 8, 10)) -> RealNetModel:
    torch.manual_seed(0)
    return RealNetModel(TinyExtractor(), CHANNELS, dims)


def test_afs_selects_exactly_the_channels_that_carry_the_mask():
    g = torch.Generator().manual_seed(0)
    b, c, h, w = 6, 32, 16, 16
    mask = torch.zeros(b, 1, 64, 64)
    for i in range(b):
        y, x = torch.randint(0, 40, (2,), generator=g).tolist()
        mask[i, :, y : y + 20, x : x + 16] = 1
    planted = torch.tensor([3, 7, 19, 30])
    normal = torch.randn(b, c, h, w, generator=g)
    anomalous = normal + 0.3 * torch.randn(b, c, h, w, generator=g)  # noise everywhere
    small = torch.nn.functional.interpolate(mask, size=(h, w), mode="nearest")
    anomalous[:, planted] = normal[:, planted] + 3.0 * small  # the planted channels answer the anomaly
    accumulator = AFSAccumulator()
    accumulator.update([anomalous], [normal], mask)
    (chosen,) = accumulator.select([4])
    assert torch.equal(chosen, planted)
    assert torch.equal(select_channels(afs_channel_errors(anomalous, normal, mask), 4), planted)


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


@pytest.mark.parametrize("size", [(64, 64), (67, 45), (33, 97)])
def test_output_shapes_for_odd_image_sizes(size):
    model = tiny_model().eval()
    out = model(torch.rand(2, 3, *size))
    assert out.logits.shape == (2, 2, *size) and out.anomaly_map.shape == (2, 1, *size)
    assert out.pred_score.shape == (2,) and ((out.pred_score >= 0) & (out.pred_score <= 1)).all()
    assert [r.shape for r in out.reconstructions] == [f.shape for f in out.features]


def test_reconstruction_starts_at_zero_and_the_backbone_is_frozen():
    model = tiny_model()
    model.train()
    assert not model.extractor.training
    out = model(torch.rand(1, 3, 64, 64))
    assert all(r.abs().max() == 0 for r in out.reconstructions)  # zero-initialised output convs
    assert not any(p.requires_grad for p in model.extractor.parameters())


def test_feature_selection_survives_a_checkpoint_round_trip():
    model = tiny_model()
    chosen = [torch.tensor([0, 2, 5, 7]), torch.arange(6) + 3, torch.arange(8) * 2, torch.arange(10) + 10]
    model.set_feature_selection(chosen)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = tiny_model()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(restored.selections, chosen, strict=True))


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match=r"dims\[1\]"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 99, 8, 10))
    with pytest.raises(ValueError, match="one entry per level"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 6))
    model = tiny_model()
    with pytest.raises(ValueError, match="Level 0"):
        model.set_feature_selection([torch.tensor([0, 99, 1, 2]), *model.selections[1:]])
    with pytest.raises(ValueError, match="Cannot select"):
        select_channels(torch.rand(5), 6)


def test_lightning_module_errors_name_what_to_pass():
    from anomalysynth.models import RealNet

    with pytest.raises(ValueError, match="Unknown timm model"):
        RealNet(backbone="no_such_backbone")
    model = RealNet()

    class Batch:
        image = torch.rand(1, 3, 64, 64)
        gt_mask = torch.zeros(1, 64, 64, dtype=torch.bool)
        source_image = None

    with pytest.raises(ValueError, match="source_image"):
        model.training_step(Batch())


def test_afs_padim_trains_with_afs_and_tests(tiny_folder, tmp_path):
    from anomalib.engine import Engine

    from anomalysynth.callbacks import AnomalyAwareFeatureSelection
    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.models import AFSPadim
    from anomalysynth.synth import create_synthesizer

    model = AFSPadim()
    random_idx = model.model.idx.clone()
    assert sum(model.afs_dims) == model.model.n_features
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=0.5)
    engine = Engine(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        logger=False,
        callbacks=[AnomalyAwareFeatureSelection(num_batches=2)],
    )
    engine.fit(model=model, datamodule=dm)
    assert model.feature_selection_done and not torch.equal(model.model.idx, random_idx)
    assert model.model.idx.numel() == model.model.n_features
    (metrics,) = engine.test(model=model, datamodule=dm)
    assert "image_AUROC" in metrics


def test_init_weights_starts_from_a_checkpoint_with_its_afs_indices(tmp_path):
    from anomalysynth.models import RealNet

    source = RealNet(dims=(8, 8, 8, 8))
    chosen = [torch.randperm(c)[:8].sort().values for c in source.model.channels]
    source.set_feature_selection(chosen)
    with torch.no_grad():
        source.model.reconstruction[0].out[-1].weight.add_(0.5)
    path = tmp_path / "realnet.ckpt"
    torch.save({"state_dict": source.state_dict(), "epoch": 7}, path)
    tuned = RealNet(dims=(8, 8, 8, 8), init_weights=path)
    assert tuned.feature_selection_done
    assert all(torch.equal(a, b) for a, b in zip(tuned.model.selections, chosen, strict=True))
    assert torch.equal(tuned.model.reconstruction[0].out[-1].weight, source.model.reconstruction[0].out[-1].weight)
    with pytest.raises(ValueError, match="does not fit"):
        RealNet(init_weights=path)  # default dims differ from the checkpoint's
    with pytest.raises(ValueError, match="no checkpoint"):
        RealNet(init_weights=tmp_path / "missing.ckpt")


class ExtractorWithBatchNorm(TinyExtractor):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels).eval())
            for conv in self.convs  # type: ignore[arg-type]
        )
        for block in self.convs:
            block[1].running_mean.uniform_(-1, 1)
            block[1].running_var.uniform_(0.5, 2)


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


def test_training_step_runs_the_backbone_once_for_unchanged_samples():
    import torch.nn.functional as F

    from anomalysynth.models import RealNet

    torch.manual_seed(0)
    model = RealNet()
    source = torch.rand(3, 3, 64, 64)
    image = model._pre(source).clone()
    anomalous = model._pre(torch.rand(1, 3, 64, 64))
    image[1] = anomalous[0]  # sample 1 carries an anomaly, samples 0 and 2 are their sources
    mask = torch.zeros(3, 64, 64, dtype=torch.bool)
    mask[1, 10:30, 10:30] = True

    class Batch:
        pass

    batch = Batch()
    batch.image, batch.source_image, batch.gt_mask = image, source, mask
    seen = []
    extract = model.model.extract
    model.model.extract = lambda x: seen.append(len(x)) or extract(x)  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="log"):
        loss = model.training_step(batch)["loss"]
    assert seen == [4]  # 3 sources + the 1 changed image, not 3 + 3
    model.model.extract = extract  # type: ignore[method-assign]
    out = model.model(image)
    target = model.model.select(model.model.extract(model._pre(source)))
    expected = sum(F.mse_loss(r, t) for r, t in zip(out.reconstructions, target, strict=True))
    target_mask = F.interpolate(mask[:, None].float(), size=out.logits.shape[-2:], mode="nearest")[:, 0].long()
    expected = expected + F.cross_entropy(out.logits, target_mask)
    assert torch.allclose(loss, expected, rtol=1e-4)


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


def test_state_dict_without_feature_statistics_loads_as_identity():
    model = tiny_model()
    model.set_feature_statistics([torch.full((c,), 3.0) for c in CHANNELS], [torch.full((c,), 2.0) for c in CHANNELS])
    old = {k: v for k, v in tiny_model().state_dict().items() if not k.startswith("feature_")}
    model.load_state_dict(old)  # strict: the missing statistics are filled in
    assert bool(model.feature_stats_done)  # never re-measured under weights trained on raw features
    assert torch.equal(model.feature_mean_0, torch.zeros(CHANNELS[0]))
    assert torch.equal(model.feature_std_3, torch.ones(CHANNELS[3]))


def test_lightning_module_measures_feature_statistics_on_clean_images():
    from anomalysynth.models import RealNet

    torch.manual_seed(0)
    model = RealNet(feature_stats_batches=2)

    class Batch:
        def __init__(self) -> None:
            self.source_image = torch.rand(4, 3, 64, 64)
            self.image = torch.zeros(4, 3, 64, 64)  # the synthetic images must not be used

    batches = [Batch() for _ in range(3)]
    model.measure_feature_statistics(batches)
    assert bool(model.model.feature_stats_done)
    clean = torch.cat([b.source_image for b in batches[:2]])
    for f in model.model.select(model.model.extract(model._pre(clean))):
        assert f.mean().abs() < 1e-3
        std = f.std(dim=(0, 2, 3), unbiased=False)
        assert ((std - 1).abs() < 1e-2).float().mean() > 0.9  # constant channels keep std 1 and stay at 0
    with pytest.raises(ValueError, match="feature_stats_batches"):
        RealNet(feature_stats_batches=0)


def test_score_pool_sets_the_box_the_image_score_averages():
    torch.manual_seed(0)
    model = RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), score_pool=1).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert torch.equal(out.pred_score, out.anomaly_map.flatten(1).amax(dim=1))
    with pytest.raises(ValueError, match="score_pool"):
        RealNetModel(TinyExtractor(), CHANNELS, (4, 6, 8, 10), score_pool=0)


def test_levels_choose_the_backbone_strides():
    from anomalysynth.models import RealNet

    default = RealNet()
    assert default.model.dims == [24, 40, 56, 40]  # RealNet's dims scaled to EfficientNet-Lite0
    finer = RealNet(levels=(2, 4, 8, 16, 32))
    assert finer.model.channels == [16, 24, 40, 112, 320]
    assert finer.model.dims == [16, 24, 40, 56, 40]
    out = finer.model(torch.rand(2, 3, 67, 93))
    assert out.anomaly_map.shape == (2, 1, 67, 93)
    assert out.logits.shape == (2, 2, 67, 93)
    with pytest.raises(ValueError, match="must name one level each"):
        RealNet(levels=(3, 4))


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
    with pytest.raises(ValueError, match=r"\[1, 28\]"):
        RealNetModel(
            TinyExtractor(), CHANNELS, (4, 6, 8, 10), discriminator_features=True, discriminator_feature_dims=29
        )


def test_the_optimizer_trains_the_feature_projection():
    from anomalysynth.models import RealNet

    module = RealNet(evaluator=False, discriminator_features=True, discriminator_feature_dims=8)
    trained = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert all(id(p) in trained for p in module.model.feature_projection.parameters())
    assert all(id(p) in trained for p in module.model.discriminator.parameters())


def _residual_map_by_hand(model: RealNetModel, images: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

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


def test_training_tracks_the_normal_residual_level_from_normal_samples_only():
    from anomalysynth.models import RealNet

    torch.manual_seed(0)
    model = RealNet(dims=(8, 8, 8, 8), evaluator=False)
    assert not bool(model.model.residual_scale_done)

    class Batch:
        pass

    def step(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch = Batch()
        batch.image, batch.source_image, batch.gt_mask = image, source, mask
        with pytest.warns(UserWarning, match="log"):
            model.training_step(batch)
        features = model.model.select(model.model.extract(image))
        levels = [(f - g(f)).pow(2) for f, g in zip(features, model.model.reconstruction, strict=True)]
        normal = mask.flatten(1).amax(dim=1) == 0
        return torch.stack([r[normal].mean() for r in levels])

    source = torch.rand(3, 3, 64, 64)
    image = model._pre(source).clone()
    image[1] = model._pre(torch.rand(1, 3, 64, 64))[0]  # sample 1 is anomalous: its residual must not count
    mask = torch.zeros(3, 64, 64, dtype=torch.bool)
    mask[1, 8:40, 8:40] = True
    with torch.no_grad():
        first = step(image, mask)
    assert bool(model.model.residual_scale_done)
    assert torch.allclose(model.model.residual_scale, first, rtol=1e-4)  # the first batch sets it
    with torch.no_grad():
        for g in model.model.reconstruction:
            g.out[-1].weight.normal_(0, 0.2)
        second = step(image, mask)
    assert torch.allclose(model.model.residual_scale, 0.95 * first + 0.05 * second, rtol=1e-4)  # then a moving mean
    # a batch without normal samples leaves it alone
    before = model.model.residual_scale.clone()
    model.model.track_residual_scale([torch.ones(2, 8, 4, 4)] * 4, torch.zeros(2, dtype=torch.bool))
    assert torch.equal(model.model.residual_scale, before)


def test_checkpoints_without_the_residual_scale_load_and_warn_when_it_is_used(tmp_path):
    from anomalysynth.models import RealNet

    old = {k: v for k, v in tiny_model().state_dict().items() if not k.startswith("residual_scale")}
    model = tiny_model()
    model.residual_scale.fill_(3.0)
    model.residual_scale_done.fill_(True)
    model.load_state_dict(old)  # strict: the missing scale is filled in as unmeasured
    assert torch.equal(model.residual_scale, torch.ones(4)) and not bool(model.residual_scale_done)

    source = RealNet(dims=(8, 8, 8, 8), evaluator=False)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("model.residual_scale")}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": state}, path)
    tuned = RealNet(dims=(8, 8, 8, 8), evaluator=False, residual_weight=0.05, init_weights=path)
    with pytest.warns(UserWarning, match="never measured"):
        tuned.on_test_start()
    tuned.model.residual_scale_done.fill_(True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuned.on_test_start()  # measured: no warning
        RealNet(dims=(8, 8, 8, 8), evaluator=False, init_weights=path).on_test_start()  # unused: no warning


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


def test_measure_residual_scale_on_clean_images_for_old_checkpoints():
    from anomalysynth.models import RealNet

    torch.manual_seed(0)
    model = RealNet(dims=(8, 8, 8, 8), evaluator=False, feature_stats_batches=2)
    with torch.no_grad():
        for g in model.model.reconstruction:
            g.out[-1].weight.normal_(0, 0.1)

    class Batch:
        def __init__(self) -> None:
            self.source_image = torch.rand(3, 3, 64, 64)
            self.image = torch.zeros(3, 3, 64, 64)  # the synthetic images must not be used

    batches = [Batch() for _ in range(3)]
    model.train()
    model.measure_residual_scale(batches)
    assert model.model.training  # the mode is restored
    assert bool(model.model.residual_scale_done)
    clean = torch.cat([b.source_image for b in batches[:2]])
    with torch.no_grad():
        features = model.model.select(model.model.extract(model._pre(clean)))
        expected = torch.stack(
            [(f - g(f)).pow(2).mean() for f, g in zip(features, model.model.reconstruction, strict=True)]
        )
    assert torch.allclose(model.model.residual_scale, expected, rtol=1e-4)
    with pytest.raises(ValueError, match="no batches"):
        model.measure_residual_scale([])

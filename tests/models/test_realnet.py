"""RealNet: the torch model's pass and the Lightning module (training, warm-up, errors)."""

from __future__ import annotations

from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F

from anomalysynth.models.realnet import RealNetModel, select_channels
from tests.models.tiny_realnet import CHANNELS, TinyExtractor, tiny_model


@pytest.mark.parametrize("size", [(64, 64), (67, 45), (33, 97)])
def test_output_shapes_for_odd_image_sizes(size):
    model = tiny_model().eval()
    out = model(torch.rand(2, 3, *size))
    assert out.logits.shape == (2, 2, *size) and out.anomaly_map.shape == (2, 1, *size)
    assert out.pred_score.shape == (2,) and ((out.pred_score >= 0) & (out.pred_score <= 1)).all()
    assert [r.shape for r in out.reconstructions] == [f.shape for f in out.features]


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


def test_training_step_runs_the_backbone_once_for_unchanged_samples():

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


def test_the_optimizer_trains_the_feature_projection():
    from anomalysynth.models import RealNet

    module = RealNet(evaluator=False, discriminator_features=True, discriminator_feature_dims=8)
    trained = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert all(id(p) in trained for p in module.model.feature_projection.parameters())
    assert all(id(p) in trained for p in module.model.discriminator.parameters())


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


def _synthetic_batches(count: int, size: int = 64) -> list[SimpleNamespace]:
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        source = torch.rand(2, 3, size, size, generator=g)
        mask = torch.zeros(2, 1, size, size)
        mask[:, :, 8:40, 16:48] = 1
        image = torch.where(mask.bool(), torch.rand(2, 3, size, size, generator=g), source)
        batches.append(SimpleNamespace(image=image, source_image=source, gt_mask=mask, gt_label=torch.ones(2)))
    return batches


def test_warm_up_selects_channels_first_then_measures_statistics_once():
    from anomalysynth.models import RealNet
    from anomalysynth.selection import AFSPlan, FeatureSelectable, RunsFeatureSelectionInWarmUp

    torch.manual_seed(0)
    model = RealNet(dims=(8, 8, 8, 8), evaluator=False, feature_stats_batches=1)
    assert isinstance(model, FeatureSelectable) and isinstance(model, RunsFeatureSelectionInWarmUp)
    steps: list[str] = []
    select, measure = model.set_feature_selection, model.measure_feature_statistics
    model.set_feature_selection = lambda indices: steps.append("selection") or select(indices)  # type: ignore[method-assign]
    model.measure_feature_statistics = lambda loader: steps.append("statistics") or measure(loader)  # type: ignore[method-assign]
    batches = _synthetic_batches(2)
    model.warm_up(batches, AFSPlan(num_batches=2), progress=False)
    assert steps == ["selection", "statistics"]
    assert model.feature_selection_done and bool(model.model.feature_stats_done)
    assert not all(torch.equal(s, torch.arange(8)) for s in model.model.selections)  # AFS chose, not the default
    model.warm_up(batches, AFSPlan(num_batches=2), progress=False)
    assert steps == ["selection", "statistics"]  # both done: a resumed or fine-tuned model repeats neither


def test_warm_up_without_a_plan_keeps_the_first_channels():
    from anomalysynth.models import RealNet

    model = RealNet(dims=(8, 8, 8, 8), evaluator=False, feature_stats_batches=1)
    model.warm_up(_synthetic_batches(1), progress=False)
    assert not model.feature_selection_done and bool(model.model.feature_stats_done)
    assert all(torch.equal(s, torch.arange(8)) for s in model.model.selections)


class _LearningRates(pl.Callback):
    """Records the learning rate each optimizer step is taken with."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append(optimizer.param_groups[0]["lr"])


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_learning_rate_follows_torch_cosine_annealing_over_the_runs_steps(tiny_folder, tmp_path, schedule):
    from anomalysynth.callbacks import EpochsForMinSteps, SynthesizeOnDevice
    from anomalysynth.synth import create_synthesizer
    from tests.conftest import quiet_trainer
    from tests.models.tiny_realnet import tiny_realnet

    torch.manual_seed(0)
    module = tiny_realnet(lr=1e-3, lr_schedule=schedule)
    rates = _LearningRates()
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        min_steps=5,  # 2 batches an epoch: EpochsForMinSteps raises max_epochs to 3, so 6 steps
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[EpochsForMinSteps(), SynthesizeOnDevice(create_synthesizer("cutpaste"), seed=1), rates],
    )
    trainer.fit(module, datamodule=tiny_folder)
    assert trainer.global_step == 6 and len(rates.rates) == 6
    # the independent reference: torch's scheduler over the same 6 steps
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=6)
    expected = []
    for _ in range(6):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    if schedule == "constant":
        expected = [1e-3] * 6
    assert rates.rates == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_unknown_learning_rate_schedule_is_refused():
    from anomalysynth.models import RealNet

    with pytest.raises(ValueError, match="lr_schedule"):
        RealNet(evaluator=False, lr_schedule="linear")  # type: ignore[arg-type]

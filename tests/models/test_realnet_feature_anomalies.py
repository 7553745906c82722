"""RealNet's optional feature-space anomalies: Gaussian feature noise on normal training samples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from anomalysynth.models.realnet.feature_anomalies import FeatureNoiseAnomalies
from anomalysynth.models.realnet.reconstruction import reconstruction_residuals
from anomalysynth.seeding import keyed_generators
from tests.models.tiny_realnet import tiny_model, tiny_realnet

SIZE = 64


def _batch(module, anomalous: bool = True) -> SimpleNamespace:
    """Three samples; sample 1 carries a synthetic anomaly when ``anomalous``, the others are their sources."""
    g = torch.Generator().manual_seed(0)
    source = torch.rand(3, 3, SIZE, SIZE, generator=g)
    image = module._pre(source).clone()
    mask = torch.zeros(3, SIZE, SIZE, dtype=torch.bool)
    if anomalous:
        image[1] = module._pre(torch.rand(1, 3, SIZE, SIZE, generator=g))[0]
        mask[1, 10:30, 10:30] = True
    return SimpleNamespace(image=image, source_image=source, gt_mask=mask)


def _step(module, batch, batch_idx: int = 0) -> torch.Tensor:
    with pytest.warns(UserWarning, match="log"):  # no Trainer to log to
        return module.training_step(batch, batch_idx)["loss"]


def _loss_before_the_option(module, batch) -> torch.Tensor:
    """The training step's loss as it was computed before feature anomalies existed."""
    image = batch.image
    source_features, image_features = module._source_and_image_features(
        module._pre(batch.source_image, size=image.shape[-2:]), image
    )
    out = module.model(image, features=image_features)
    target = module.model.select(source_features)
    reconstruction = sum(F.mse_loss(r, t) for r, t in zip(out.reconstructions, target, strict=True))
    mask = batch.gt_mask.float().view(batch.gt_mask.shape[0], 1, *batch.gt_mask.shape[-2:])
    mask = F.interpolate(mask, size=out.logits.shape[-2:], mode="nearest")[:, 0].long()
    residuals = reconstruction_residuals(out.features, out.reconstructions)
    module.model.track_residual_scale(residuals, mask.flatten(1).amax(dim=1) == 0)
    return reconstruction + F.cross_entropy(out.logits, mask)


def test_off_by_default_and_bit_identical_to_training_without_it(monkeypatch):
    import anomalysynth.models.realnet.lightning_model as lightning_model

    reference, module = tiny_realnet(), tiny_realnet(feature_anomalies=0.0)
    assert reference.feature_noise.probability == 0.0
    batch = _batch(module)

    def no_draws(*args, **kwargs):
        raise AssertionError("no generator may be made when feature_anomalies is 0")

    monkeypatch.setattr(lightning_model, "keyed_generators", no_draws)
    loss = _step(module, batch)
    expected = _loss_before_the_option(reference, batch)
    assert torch.equal(loss, expected)
    loss.backward()
    expected.backward()
    for mine, theirs in zip(module.model.parameters(), reference.model.parameters(), strict=True):
        assert (mine.grad is None and theirs.grad is None) or torch.equal(mine.grad, theirs.grad)
    assert torch.equal(module.model.residual_scale, reference.model.residual_scale)
    # the state dict (checkpoints) does not change either
    assert module.state_dict().keys() == reference.state_dict().keys()


@pytest.mark.parametrize("mask", ["perlin", "whole"])
@pytest.mark.parametrize("with_features", [False, True], ids=["residuals", "residuals+features"])
def test_noised_normal_samples_are_labelled_where_their_features_changed(monkeypatch, mask, with_features):
    module = tiny_realnet(feature_anomalies=1.0, feature_noise_std=0.5, feature_anomaly_mask=mask)
    if with_features:  # the shipped recipe's discriminator also sees the (projected) features
        module.model = tiny_model(discriminator_features=True, discriminator_feature_dims=4)
    batch = _batch(module, anomalous=False)
    seen: dict[str, torch.Tensor] = {}
    module.model.discriminator.register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0].detach()))
    module.model.reconstruction[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("level0", args[0]))
    cross_entropy = F.cross_entropy

    def recording_cross_entropy(logits, target, *args, **kwargs):
        seen["target"] = target
        return cross_entropy(logits, target, *args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", recording_cross_entropy)
    _step(module, batch)
    monkeypatch.setattr(F, "cross_entropy", cross_entropy)

    assert not bool(module.model.residual_scale_done)  # noised samples do not count as normal
    target = seen["target"]
    assert target.shape == (3, SIZE, SIZE)
    assert (target.flatten(1).amax(dim=1) == 1).all()  # every (normal) sample is labelled anomalous somewhere
    if mask == "whole":
        assert (target == 1).all()
    else:
        assert (target == 0).any()  # a Perlin region, not the whole image
    # the finest level's features changed exactly under the label (its 4x4 pixel cells)
    with torch.no_grad():
        clean = module.model.select(module.model.extract(batch.image))
    changed = (seen["level0"] != clean[0]).any(dim=1)
    covered = F.max_pool2d(target[:, None].float(), 4)[:, 0] > 0
    assert torch.equal(changed, covered)
    # the discriminator's input differs from the one the clean features give
    noisy_input = seen["input"]
    _step(module, batch)  # the same batch index draws the same noise again
    assert torch.equal(seen["input"], noisy_input)
    module.feature_noise.probability = 0.0
    _step(module, batch)
    assert seen["input"].shape == noisy_input.shape and not torch.allclose(seen["input"], noisy_input)


def test_only_normal_samples_get_noise_and_each_by_its_own_generator():
    anomalies = FeatureNoiseAnomalies(probability=1.0, mask="whole")
    normal = torch.tensor([True, False, True])
    draw = anomalies.draw(normal, (8, 8), keyed_generators(0, ["a", "b", "c"]))
    assert draw.samples.tolist() == [0, 2]
    assert draw.mask[1].sum() == 0 and (draw.mask[[0, 2]] == 1).all()
    features = [torch.zeros(3, 4, 4, 4), torch.zeros(3, 5, 2, 2)]
    noisy = draw(features)
    assert all(torch.equal(n[1], f[1]) for n, f in zip(noisy, features, strict=True))
    assert all((n[[0, 2]] != 0).all() for n in noisy)
    # a sample's coin does not depend on the others: half the samples at probability 0.5, over many
    half = FeatureNoiseAnomalies(probability=0.5)
    chosen = half.draw(torch.ones(400, dtype=torch.bool), (4, 4), keyed_generators(0, range(400))).samples
    assert 150 < len(chosen) < 250
    alone = half.draw(torch.ones(1, dtype=torch.bool), (4, 4), keyed_generators(0, [7])).samples
    assert (7 in chosen.tolist()) == (len(alone) == 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"probability": 1.5}, "feature_anomalies"),
        ({"probability": -0.1}, "feature_anomalies"),
        ({"probability": math.nan}, "feature_anomalies"),
        ({"probability": "0.5"}, "feature_anomalies"),
        ({"std": 0.0}, "feature_noise_std"),
        ({"std": -1.0}, "feature_noise_std"),
        ({"std": math.inf}, "feature_noise_std"),
        ({"mask": "box"}, "feature_anomaly_mask"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureNoiseAnomalies(**kwargs)


def test_realnet_checks_its_arguments():
    from anomalysynth.models import RealNet

    with pytest.raises(ValueError, match=r"`feature_anomalies` in \[0, 1\]"):
        RealNet(feature_anomalies=2.0)
    with pytest.raises(ValueError, match="feature_noise_std"):
        RealNet(feature_anomalies=0.5, feature_noise_std=0.0)
    with pytest.raises(ValueError, match="'perlin', 'whole'"):
        RealNet(feature_anomalies=0.5, feature_anomaly_mask="everywhere")


def test_runs_with_the_same_seed_repeat(monkeypatch):
    def losses(seed: int, batch_idx: int = 0) -> torch.Tensor:
        monkeypatch.setenv("PL_GLOBAL_SEED", str(seed))
        module = tiny_realnet(feature_anomalies=1.0, feature_noise_std=0.5)
        batch = _batch(module)
        return torch.stack([_step(module, batch, batch_idx).detach() for _ in range(2)])

    first = losses(0)
    assert torch.equal(first, losses(0))
    assert not torch.equal(first, losses(1))  # the seed decides the draws
    assert not torch.equal(first, losses(0, batch_idx=1))  # and so does the batch


def test_reachable_from_yaml():
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch import LightningModule

    text = """
    model:
      class_path: anomalysynth.models.RealNet
      init_args:
        feature_anomalies: 0.5
        feature_noise_std: 0.05
        feature_anomaly_mask: whole
        evaluator: false
        visualizer: false
    """
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--model", type=LightningModule)
    model = parser.instantiate_classes(parser.parse_object(yaml.safe_load(text))).model
    assert model.feature_noise.probability == 0.5 and model.feature_noise.noise.std == 0.05
    assert model.feature_noise.mask == "whole"
    assert model.hparams["feature_anomalies"] == 0.5  # saved with checkpoints

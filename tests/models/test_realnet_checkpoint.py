"""RealNet checkpoints: round trips, older state dicts, init_weights."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from tests.models.tiny_realnet import CHANNELS, tiny_model


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


def test_state_dict_without_feature_statistics_loads_as_identity():
    model = tiny_model()
    model.set_feature_statistics([torch.full((c,), 3.0) for c in CHANNELS], [torch.full((c,), 2.0) for c in CHANNELS])
    old = {k: v for k, v in tiny_model().state_dict().items() if not k.startswith("feature_")}
    model.load_state_dict(old)  # strict: the missing statistics are filled in
    assert bool(model.feature_stats_done)  # never re-measured under weights trained on raw features
    assert torch.equal(model.feature_mean_0, torch.zeros(CHANNELS[0]))
    assert torch.equal(model.feature_std_3, torch.ones(CHANNELS[3]))


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
    tuned = RealNet(
        dims=(8, 8, 8, 8),
        evaluator=False,
        residual_weight=0.05,
        neighbour_weight=0.0,
        gaussian_weight=0.0,
        score_gaussian_weight=0.0,
        init_weights=path,
    )
    with pytest.warns(UserWarning, match="never measured"):
        tuned.on_test_start()
    tuned.model.residual_scale_done.fill_(True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tuned.on_test_start()  # measured: no warning
        RealNet(
            dims=(8, 8, 8, 8),
            evaluator=False,
            neighbour_weight=0.0,
            gaussian_weight=0.0,
            score_gaussian_weight=0.0,
            init_weights=path,
        ).on_test_start()  # unused


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


def test_init_weights_takes_a_checkpoint_from_before_feature_statistics(tmp_path):
    from anomalysynth.models import RealNet

    source = RealNet(dims=(8, 8, 8, 8), evaluator=False)
    source.model.set_feature_statistics(
        [torch.full((c,), 2.0) for c in source.model.channels], [torch.full((c,), 3.0) for c in source.model.channels]
    )
    old = {k: v for k, v in source.state_dict().items() if not k.startswith(("model.feature_", "model.residual_"))}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": old}, path)
    tuned = RealNet(dims=(8, 8, 8, 8), evaluator=False, init_weights=path)
    # identity statistics, marked as measured: weights trained on raw features keep seeing raw features
    assert bool(tuned.model.feature_stats_done)
    assert torch.equal(tuned.model.feature_mean_0, torch.zeros(tuned.model.channels[0]))
    assert torch.equal(tuned.model.feature_std_2, torch.ones(tuned.model.channels[2]))
    assert not bool(tuned.model.residual_scale_done)

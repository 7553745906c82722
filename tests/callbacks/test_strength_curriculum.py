"""StrengthCurriculum: schedule values, the schedule inside Trainer.fit (workers too), refusals, the grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from anomalysynth.ablation import load_grid, set_dotted
from anomalysynth.callbacks import StrengthCurriculum, SynthesizeOnDevice
from anomalysynth.datamodules import SyntheticAnomalyDataModule, SyntheticAnomalyDataset
from anomalysynth.synth import PerlinTextureBlend
from anomalysynth.synth.schedule import StrengthSchedule, get_attribute
from tests.conftest import quiet_trainer

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# ---------------------------------------------------------------------- schedule values
def test_linear_values_at_known_epochs():
    schedule = StrengthSchedule("blend.opacity", 1.0, 0.5, epochs=6)
    expected = {0: 1.0, 1: 0.9, 2: 0.8, 4: 0.6, 5: 0.5, 9: 0.5}  # t = e / 5, held at the end afterwards
    for epoch, value in expected.items():
        assert schedule.value(epoch) == pytest.approx(value)


def test_cosine_values_at_known_epochs():
    schedule = StrengthSchedule("blend.opacity", 1.0, 0.5, epochs=5, schedule="cosine")
    # t = e / 4; value = 0.5 + 0.5 (1 + cos(pi t)) / 2
    expected = {0: 1.0, 1: 0.9267767, 2: 0.75, 3: 0.5732233, 4: 0.5, 7: 0.5}
    for epoch, value in expected.items():
        assert schedule.value(epoch) == pytest.approx(value, abs=1e-7)


def test_step_values_at_known_epochs():
    halves = StrengthSchedule("blend.opacity", 1.0, 0.5, epochs=10, schedule="step")  # steps=2: switch at 5
    assert [halves.value(e) for e in (0, 4, 5, 9, 20)] == [1.0, 1.0, 0.5, 0.5, 0.5]
    thirds = StrengthSchedule("blend.opacity", 1.0, 0.4, epochs=9, schedule="step", steps=3)  # at 3 and 6
    assert [thirds.value(e) for e in (0, 2, 3, 5, 6, 8)] == pytest.approx([1.0, 1.0, 0.7, 0.7, 0.4, 0.4])
    marked = StrengthSchedule("blend.opacity", 1.0, 0.5, epochs=10, schedule="step", milestones=(2, 7))
    assert [marked.value(e) for e in (0, 1, 2, 6, 7, 9)] == pytest.approx([1.0, 1.0, 0.75, 0.75, 0.5, 0.5])


def test_ranges_move_both_ends_and_a_number_meets_a_range():
    schedule = StrengthSchedule("blend.opacity", [0.9, 1.0], [0.5, 0.8], epochs=5)
    assert schedule.value(2) == pytest.approx((0.7, 0.9))
    assert StrengthSchedule("blend.opacity", 1.0, [0.5, 1.0], epochs=3).value(1) == pytest.approx((0.75, 1.0))
    assert math.isclose(StrengthSchedule("x", 0.2, 0.1, epochs=1).value(0), 0.1)  # one epoch: the end


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schedule": "exponential"}, "schedule"),
        ({"start": [1.0, 0.5]}, "low <= high"),
        ({"steps": 1}, "steps"),
        ({"milestones": [3, 2]}, "milestones"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs, match):
    args = {"attribute": "blend.opacity", "start": 1.0, "end": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        StrengthCurriculum(**args)


# ---------------------------------------------------------------------- inside Trainer.fit
class OpacityRecorder(pl.LightningModule):
    """Records the blend opacity the synthesizer drew for every training item, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, 1)
        self.drawn: dict[int, list[torch.Tensor]] = {}
        self.batches: list[tuple[int, Any]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        params = batch.synthesis_params
        self.drawn.setdefault(self.current_epoch, []).append(params["opacity"].float())
        self.batches.append((self.current_epoch, batch))
        return self.head(batch.image.as_subclass(torch.Tensor).mean().view(1, 1)).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.head.parameters(), lr=0.01)


def fit(module: pl.LightningModule, tmp_path: Path, callbacks: list, **fit_kwargs: Any) -> pl.Trainer:
    trainer = quiet_trainer(tmp_path, max_epochs=3, limit_val_batches=0, num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(module, **fit_kwargs)
    return trainer


@pytest.mark.parametrize("workers", [0, 1])
def test_drawn_opacity_follows_the_schedule_every_epoch(tiny_folder, tmp_path, workers):
    synth = PerlinTextureBlend(opacity=(0.2, 1.0))
    datamodule = SyntheticAnomalyDataModule(tiny_folder, synth, anomaly_ratio=1.0, num_workers=workers)
    # a degenerate range (v, v) per epoch: every drawn opacity equals the scheduled value
    curriculum = StrengthCurriculum("blend.opacity", start=1.0, end=0.4)  # epochs: the Trainer's 3
    module = OpacityRecorder()
    trainer = fit(module, tmp_path, [curriculum], datamodule=datamodule)
    if workers:  # persistent workers: the value reached them through the sampler's epoch
        assert trainer.train_dataloader.persistent_workers
    assert sorted(module.drawn) == [0, 1, 2]
    for epoch, value in {0: 1.0, 1: 0.7, 2: 0.4}.items():
        drawn = torch.cat(module.drawn[epoch])
        assert drawn.numel() == 10 and torch.allclose(drawn, torch.full_like(drawn, value))
    assert trainer.callback_metrics["strength/blend.opacity/low"] == pytest.approx(0.4)
    assert trainer.callback_metrics["strength/blend.opacity/high"] == pytest.approx(0.4)
    # the preset's record of its constructor argument follows the value used
    assert synth.blend.opacity == synth.opacity == pytest.approx((0.4, 0.4))
    # the params are honest: an epoch-0 batch replays exactly with the end-of-training synthesizer
    epoch, batch = module.batches[0]
    assert epoch == 0
    replay = synth.apply(batch.source_image.as_subclass(torch.Tensor), batch.synthesis_params)
    assert torch.allclose(replay.image, batch.image.as_subclass(torch.Tensor), atol=1e-6)


def test_on_device_synthesizer_is_scheduled(tiny_folder, tmp_path):
    synth = PerlinTextureBlend()
    on_device = SynthesizeOnDevice(synth, anomaly_ratio=1.0)
    curriculum = StrengthCurriculum("blend.opacity", start=[0.8, 0.8], end=[0.2, 0.2], schedule="step", epochs=2)
    module = OpacityRecorder()
    fit(module, tmp_path, [on_device, curriculum], datamodule=tiny_folder)
    for epoch, value in {0: 0.8, 1: 0.2, 2: 0.2}.items():
        drawn = torch.cat(module.drawn[epoch])
        assert torch.allclose(drawn, torch.full_like(drawn, value))


def test_a_loader_whose_persistent_workers_cannot_see_the_epoch_is_refused(tiny_folder, tmp_path):
    tiny_folder.setup()
    dataset = SyntheticAnomalyDataset(tiny_folder.train_data, PerlinTextureBlend(), anomaly_ratio=1.0)
    loader = DataLoader(dataset, batch_size=4, num_workers=1, persistent_workers=True, collate_fn=dataset.collate_fn)
    curriculum = StrengthCurriculum("blend.opacity", start=1.0, end=0.5)
    with pytest.raises(ValueError, match="persistent workers"):
        fit(OpacityRecorder(), tmp_path, [curriculum], train_dataloaders=loader)


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("attribute", "match"),
    [
        ("source.strength", r"no attribute 'source.strength'.*blend\.opacity"),  # says what exists
        ("blend.opacty", r"blend has no 'opacty'.*blend\.opacity"),
        ("opacity", "schedule 'blend.opacity'"),  # the preset's record of the argument, not the value used
        ("mask.threshold", "does not change the parameters"),  # read at render time: replays would lie
        ("anomaly_ratio", "one coin"),
        ("source", "not a float"),
    ],
)
def test_bad_attribute_paths_raise(tiny_folder, tmp_path, attribute, match):
    datamodule = SyntheticAnomalyDataModule(tiny_folder, PerlinTextureBlend(), anomaly_ratio=1.0)
    curriculum = StrengthCurriculum(attribute, start=0.9, end=0.5)
    with pytest.raises(ValueError, match=match):
        fit(OpacityRecorder(), tmp_path, [curriculum], datamodule=datamodule)


def test_explicit_synthesizer_and_nested_paths():
    from anomalysynth.synth import DefaultMix

    mix = DefaultMix()
    curriculum = StrengthCurriculum("synthesizers.2.blend.opacity", start=[0.9, 1.0], end=[0.3, 1.0], synthesizer=mix)
    trainer = quiet_trainer(None, max_epochs=4, callbacks=[curriculum])
    curriculum.setup(trainer, OpacityRecorder(), "fit")
    assert curriculum.targets == [mix]
    assert get_attribute(mix, "synthesizers.2.blend.opacity") == pytest.approx((0.9, 1.0))
    assert curriculum.plan.apply(mix, 2) == pytest.approx((0.5, 1.0))
    assert mix.synthesizers[2].config()["opacity"] == pytest.approx([0.5, 1.0])


def test_no_synthesizer_found_raises(tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[])
    curriculum = StrengthCurriculum("blend.opacity", start=1.0, end=0.5)
    curriculum.setup(trainer, OpacityRecorder(), "fit")  # a plain loader's synthesizer is looked for later
    with pytest.raises(ValueError, match="found no synthesizer"):
        curriculum.on_train_start(trainer, OpacityRecorder())


def test_anomalib_use_synthesizer_callback_is_found(tmp_path):
    from anomalysynth.integrations.anomalib import UseSynthesizer

    synth = PerlinTextureBlend()
    curriculum = StrengthCurriculum("blend.opacity", start=1.0, end=0.5)
    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[UseSynthesizer(synth), curriculum])
    curriculum.setup(trainer, OpacityRecorder(), "fit")
    assert curriculum.targets == [synth] and synth.blend.opacity == (1.0, 1.0)


# ---------------------------------------------------------------------- the ablation grid
def test_grid_axes_reach_the_callback_arguments():
    config = {"trainer": {"callbacks": [{"class_path": "a"}, {"class_path": "b", "init_args": {}}]}}
    set_dotted(config, "trainer.callbacks.1.init_args.end", [0.3, 1.0])
    assert config["trainer"]["callbacks"][1]["init_args"] == {"end": [0.3, 1.0]}
    with pytest.raises(ValueError, match="index a list of 2"):
        set_dotted(config, "trainer.callbacks.5.init_args.end", 0.1)

    grid = load_grid(CONFIGS / "ablation" / "strength_curriculum.yaml")
    runs = grid.runs()
    assert len(runs) == 4 * 3
    by_level = {r.levels["curriculum"]: r.config["trainer"]["callbacks"][1]["init_args"] for r in runs}
    assert by_level["cosine"]["schedule"] == "cosine" and by_level["step"]["steps"] == 3
    assert by_level["fixed"]["start"] == by_level["fixed"]["end"] == [0.5, 1.0]

    # the callback is built from the YAML as LightningCLI builds it
    from jsonargparse import ArgumentParser
    from lightning.pytorch.callbacks import Callback

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--callback", type=Callback)
    spec = next(r for r in runs if r.levels["curriculum"] == "linear").config["trainer"]["callbacks"][1]
    callback = parser.instantiate_classes(parser.parse_object({"callback": spec})).callback
    assert isinstance(callback, StrengthCurriculum)
    assert callback.start == (0.9, 1.0) and callback.attribute == "blend.opacity"

"""The AnomalyAwareFeatureSelection callback on a real Trainer."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from anomalysynth.callbacks import AnomalyAwareFeatureSelection
from anomalysynth.datamodules import SyntheticAnomalyDataModule
from anomalysynth.synth import create_synthesizer
from tests.conftest import quiet_trainer
from tests.models.tiny_realnet import CHANNELS, TinyExtractor


class TinyAFSModule(pl.LightningModule):
    """The smallest module implementing the AFS protocol."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.extractor = TinyExtractor()
        self.head = torch.nn.Linear(1, 1)
        self.afs_dims = [4, 6, 8, 10]
        self.indices = None
        self.calls = 0

    def afs_features(self, images):
        self.calls += 1
        return self.extractor(images)

    def set_feature_selection(self, indices):
        self.indices = [torch.as_tensor(i) for i in indices]

    @property
    def feature_selection_done(self):
        return self.indices is not None

    def training_step(self, batch, batch_idx):
        return self.head(torch.ones(1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, datamodule, callback, tmp_path):
    trainer = quiet_trainer(tmp_path, max_epochs=1, limit_train_batches=1, callbacks=[callback])
    trainer.fit(module, datamodule=datamodule)


def test_afs_runs_before_training_and_its_cache_is_reused(tiny_folder, tmp_path):
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=1.0)
    cache = tmp_path / "afs.pt"
    first = TinyAFSModule()
    fit(first, dm, AnomalyAwareFeatureSelection(num_batches=2, cache_path=str(cache)), tmp_path)
    assert first.calls > 0 and cache.is_file()
    assert [len(i) for i in first.indices] == first.afs_dims
    assert all(int(i.max()) < c for i, c in zip(first.indices, CHANNELS, strict=True))
    second = TinyAFSModule()
    fit(second, dm, AnomalyAwareFeatureSelection(num_batches=2, cache_path=str(cache)), tmp_path)
    assert second.calls == 0, "indices come from the cache file, not recomputed"
    assert all(torch.equal(a, b) for a, b in zip(first.indices, second.indices, strict=True))


def test_afs_rejects_bad_arguments_and_modules(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="num_batches"):
        AnomalyAwareFeatureSelection(num_batches=0)
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=1.0)
    module = TinyAFSModule()
    module.afs_dims = [4, 6, 8, 99]
    with pytest.raises(ValueError, match=r"dims\[3\]"):
        fit(module, dm, AnomalyAwareFeatureSelection(num_batches=1), tmp_path)


class TinyWarmUpModule(TinyAFSModule):
    """A module with its own warm-up: the callback hands it the plan instead of selecting itself."""

    def __init__(self) -> None:
        super().__init__()
        self.plan = None
        self.steps: list[str] = []

    def request_feature_selection(self, plan):
        self.steps.append("plan handed over")
        self.plan = plan

    def on_fit_start(self):
        self.steps.append("warm-up")
        self.plan.apply(self, self.trainer.datamodule.train_dataloader(), self.device)
        self.steps.append("selected" if self.indices is not None else "not selected")


def test_a_module_with_a_warm_up_runs_the_callbacks_plan_itself(tiny_folder, tmp_path):
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=1.0)
    module = TinyWarmUpModule()
    callback = AnomalyAwareFeatureSelection(num_batches=1, dims=[2, 3, 4, 5])
    fit(module, dm, callback, tmp_path)
    assert module.steps == ["plan handed over", "warm-up", "selected"]
    assert module.plan is callback.plan and [len(i) for i in module.indices] == [2, 3, 4, 5]
    assert not callback.computed  # the module's warm-up selected, not the callback

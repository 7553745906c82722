"""The AnomalyAwareFeatureSelection callback on a real Trainer."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from anomalysynth.callbacks import AnomalyAwareFeatureSelection, SynthesizeOnDevice
from anomalysynth.datamodules import SyntheticAnomalyDataModule
from anomalysynth.synth import create_synthesizer
from anomalysynth.synth.keyed import synthesize_keyed
from tests.conftest import quiet_trainer
from tests.models.tiny_realnet import CHANNELS, TinyExtractor, tiny_realnet


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
        self.seen: list[torch.Tensor] = []  # what AFS looked at: anomalous, clean, anomalous, clean, ...

    def afs_features(self, images):
        self.calls += 1
        self.seen.append(images.detach().cpu().clone())
        return self.extractor(images)

    def afs_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(anomalous, clean) images of every triplet AFS saw, in order."""
        return torch.cat(self.seen[0::2]), torch.cat(self.seen[1::2])

    def set_feature_selection(self, indices):
        self.indices = [torch.as_tensor(i) for i in indices]

    @property
    def feature_selection_done(self):
        return self.indices is not None

    def training_step(self, batch, batch_idx):
        return self.head(torch.ones(1, 1)).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(module, datamodule, callback, tmp_path, *more_callbacks):
    trainer = quiet_trainer(
        tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=0, callbacks=[callback, *more_callbacks]
    )
    trainer.fit(module, datamodule=datamodule)
    return trainer


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
    with pytest.raises(ValueError, match="num_samples"):
        AnomalyAwareFeatureSelection(num_samples=0)
    with pytest.raises(ValueError, match="Synthesizer"):
        AnomalyAwareFeatureSelection(synthesizer="cutpaste")  # type: ignore[arg-type]
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


def test_afs_gathers_the_papers_number_of_anomalous_samples_by_default_and_the_configured_one(tiny_folder, tmp_path):
    assert AnomalyAwareFeatureSelection().num_samples == 1024  # RealNet's AFS: 1024 synthetic samples
    # 10 training images at ratio 0.5 give about 5 anomalous samples a pass: the loader is cycled
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=0.5)
    module = TinyAFSModule()
    fit(module, dm, AnomalyAwareFeatureSelection(num_samples=23), tmp_path)
    anomalous, clean = module.afs_pairs()
    assert len(anomalous) == len(clean) == 23
    assert not any(torch.equal(a, c) for a, c in zip(anomalous, clean, strict=True))
    # pass p reads the data module's epoch p, so every pass brings fresh anomalies, not repeats
    distinct = {a.numpy().tobytes() for a in anomalous}
    assert len(distinct) == 23
    assert len({c.numpy().tobytes() for c in clean}) <= 10  # ... of the same 10 normal images


def clean_images_by_path(folder) -> dict[str, torch.Tensor]:
    folder.setup()
    return {item.image_path: item.image.as_subclass(torch.Tensor) for item in folder.train_data}


def key_of(image: torch.Tensor, images: dict[str, torch.Tensor]) -> str:
    (key,) = [k for k, v in images.items() if torch.equal(v, image)]
    return key


def test_afs_synthesizes_from_plain_normal_images_with_the_on_device_callbacks_synthesizer(tiny_folder, tmp_path):
    synthesizer = create_synthesizer("cutpaste")
    on_device = SynthesizeOnDevice(synthesizer, anomaly_ratio=0.5, seed=5)
    module = TinyAFSModule()
    trainer = fit(module, tiny_folder, AnomalyAwareFeatureSelection(num_samples=13), tmp_path, on_device)
    assert trainer.global_step == 1 and module.feature_selection_done
    anomalous, clean = module.afs_pairs()
    assert len(anomalous) == 13  # every normal image drawn gives one: 10 in pass 0, 3 in pass 1
    images = clean_images_by_path(tiny_folder)
    for i, (a, c) in enumerate(zip(anomalous, clean, strict=True)):
        # keyed like SynthesizeOnDevice: (its seed, pass as epoch, image path), made anomalous
        key, epoch = key_of(c, images), 0 if i < 10 else 1
        expected = synthesize_keyed(synthesizer, c[None], [key], 5, anomaly_ratio=1.0, epoch=epoch)
        assert torch.equal(a, expected.image[0]) and bool(expected.label[0])
    assert len({key_of(c, images) for c in clean[:10]}) == 10  # pass 0 saw each image once


def test_afs_on_plain_normal_images_without_a_synthesizer_says_what_to_add(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="SynthesizeOnDevice"):
        fit(TinyAFSModule(), tiny_folder, AnomalyAwareFeatureSelection(num_samples=4), tmp_path)


def test_realnet_trains_with_afs_and_on_device_synthesis_on_a_plain_datamodule(tiny_folder, tmp_path):
    torch.manual_seed(0)
    module = tiny_realnet()
    steps: list[str] = []
    features, measure = module.afs_features, module.measure_feature_statistics
    module.afs_features = lambda images: steps.append(len(images)) or features(images)  # type: ignore[method-assign]
    module.measure_feature_statistics = lambda loader: steps.append("statistics") or measure(loader)  # type: ignore[method-assign]
    synthesizer = create_synthesizer("perlin_texture")
    trainer = quiet_trainer(
        tmp_path,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        callbacks=[AnomalyAwareFeatureSelection(num_samples=12), SynthesizeOnDevice(synthesizer, seed=1)],
    )
    trainer.fit(module, datamodule=tiny_folder)
    assert trainer.global_step == 2 and module.feature_selection_done
    assert steps[-1] == "statistics" and "statistics" not in steps[:-1]  # RealNet's warm-up: AFS first
    assert sum(steps[:-1][0::2]) == 12  # 12 anomalous (and 12 clean) images through the backbone
    assert not all(torch.equal(s, torch.arange(len(s))) for s in module.model.selections)  # AFS chose

"""SyntheticAnomalyDataset and SyntheticAnomalyDataModule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from anomalysynth.callbacks import SynthesizeOnDevice
from anomalysynth.datamodules import (
    EpochSampler,
    SyntheticAnomalyDataModule,
    SyntheticAnomalyDataset,
    SyntheticImageBatch,
)
from anomalysynth.synth import create_synthesizer


def all_items(loader) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = {}
    for batch in loader:
        for i, path in enumerate(batch.image_path):
            out[path] = (batch.image[i].clone(), batch.gt_mask[i].clone(), batch.gt_label[i].clone())
    return out


@pytest.fixture
def wrapped(tiny_folder):
    tiny_folder.setup()
    return SyntheticAnomalyDataset(tiny_folder.train_data, create_synthesizer("cutpaste"), anomaly_ratio=0.5, seed=3)


def test_items_do_not_depend_on_workers_or_batch_size(wrapped):
    reference = None
    for workers, batch_size in ((0, 1), (2, 8), (0, 8), (2, 1)):
        loader = DataLoader(
            wrapped, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=wrapped.collate_fn
        )
        items = all_items(loader)
        if reference is None:
            reference = items
            continue
        assert items.keys() == reference.keys()
        for key, (image, mask, label) in items.items():
            assert torch.equal(image, reference[key][0]) and torch.equal(mask, reference[key][1])
            assert label == reference[key][2]


def test_realised_anomaly_fraction_matches_the_one_ratio():
    images = [torch.full((3, 16, 16), i / 400) for i in range(400)]
    for ratio in (0.0, 0.3, 1.0):
        ds = SyntheticAnomalyDataset(images, create_synthesizer("cutpaste"), anomaly_ratio=ratio)
        fraction = torch.stack([torch.as_tensor(ds[i].gt_label) for i in range(len(ds))]).float().mean()
        # binomial(400, 0.3): sd 0.023, so 0.07 is three sd
        assert abs(float(fraction) - ratio) < 0.07, (ratio, float(fraction))
    # the synthesizer's own ratio is used when the dataset gives none: still one coin, never a product
    own = SyntheticAnomalyDataset(images, create_synthesizer("cutpaste", anomaly_ratio=0.3), anomaly_ratio=None)
    fraction = torch.stack([torch.as_tensor(own[i].gt_label) for i in range(len(own))]).float().mean()
    assert abs(float(fraction) - 0.3) < 0.07
    with pytest.raises(ValueError, match="one place"):
        SyntheticAnomalyDataset(images, create_synthesizer("cutpaste", anomaly_ratio=0.3), anomaly_ratio=0.5)
    with pytest.raises(ValueError, match="anomaly_ratio"):
        SyntheticAnomalyDataset(images, create_synthesizer("cutpaste"), anomaly_ratio=1.5)


def test_items_replay_through_their_params(wrapped):
    synth = wrapped.synthesizer
    for i in range(len(wrapped)):
        item = wrapped[i]
        params = {k: v.unsqueeze(0) for k, v in item.synthesis_params.items()}
        again = synth.apply(item.source_image.unsqueeze(0), params)
        assert torch.equal(again.image[0], item.image)
        assert torch.equal(again.mask[0, 0] > 0, item.gt_mask)


def test_items_carry_the_clean_source_and_honest_labels(wrapped):
    for i in range(len(wrapped)):
        item = wrapped[i]
        clean = np.asarray(Image.open(item.image_path).convert("RGB"), dtype=np.float32) / 255
        assert torch.allclose(item.source_image, torch.from_numpy(clean).permute(2, 0, 1), atol=1e-6)
        assert bool(item.gt_label) == bool(item.gt_mask.any())
        outside = ~item.gt_mask.unsqueeze(0).expand_as(item.image)
        assert torch.equal(item.image[outside], item.source_image[outside])


def test_fresh_anomalies_every_epoch_by_default_and_a_switch_for_a_fixed_set(tiny_folder):
    tiny_folder.setup()
    synth = create_synthesizer("cutpaste")
    fresh = SyntheticAnomalyDataset(tiny_folder.train_data, synth, anomaly_ratio=1.0)
    fixed = SyntheticAnomalyDataset(tiny_folder.train_data, synth, anomaly_ratio=1.0, reseed_every_epoch=False)
    assert torch.equal(fixed[(0, 2)].image, fixed[(5, 2)].image)
    assert not torch.equal(fresh[(0, 2)].image, fresh[(5, 2)].image)
    assert torch.equal(fresh[(5, 2)].image, fresh[(5, 2)].image)
    sampler = EpochSampler(len(fresh), seed=1)
    sampler.set_epoch(3)
    assert {e for e, _ in sampler} == {3} and sorted(i for _, i in sampler) == list(range(len(fresh)))


def epoch_items(
    dm: SyntheticAnomalyDataModule, epoch: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)  # what Lightning's fit loop does at every epoch
    return all_items(loader)


def test_datamodule_epochs_differ_and_do_not_depend_on_workers_or_batch_size(tiny_folder):
    synth = create_synthesizer("perlin_texture")
    reference: dict[int, dict] = {}
    for workers, batch_size in ((0, 4), (2, 3), (0, 1)):
        dm = SyntheticAnomalyDataModule(
            tiny_folder, synth, anomaly_ratio=1.0, num_workers=workers, train_batch_size=batch_size
        )
        dm.setup("fit")
        for epoch in (0, 1):
            items = epoch_items(dm, epoch)
            if epoch not in reference:
                reference[epoch] = items
                continue
            assert items.keys() == reference[epoch].keys()
            for key, (image, mask, label) in items.items():
                assert torch.equal(image, reference[epoch][key][0]) and torch.equal(mask, reference[epoch][key][1])
                assert label == reference[epoch][key][2]
    # the same image carries a different anomaly in epoch 1 than in epoch 0
    for key in reference[0]:
        assert not torch.equal(reference[0][key][0], reference[1][key][0])


def test_the_default_datamodule_draws_fresh_anomalies_at_its_one_ratio(tiny_folder):
    """Every default: the shipped DefaultMix over the training folder, ratio 0.5, fresh every epoch."""
    from anomalysynth.synth import DefaultMix

    reference: dict[int, dict] = {}  # epoch -> {path: (image, mask, label)} with no workers
    coins: list[bool] = []
    for workers, batch_size in ((0, 4), (2, 3)):
        dm = SyntheticAnomalyDataModule(tiny_folder, num_workers=workers, train_batch_size=batch_size)
        dm.setup("fit")
        assert isinstance(dm.synthesizer, DefaultMix) and dm.anomaly_ratio == 0.5
        for epoch in range(12 if workers == 0 else 2):
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            items = {}
            for batch in loader:
                for i, path in enumerate(batch.image_path):
                    coin = bool(batch.synthesis_params["anomalous"][i])
                    label, mask = bool(batch.gt_label[i]), batch.gt_mask[i]
                    # a label only where the coin fell on "anomalous", and the mask says the same
                    assert coin or not label
                    assert label == bool(mask.any())
                    items[path] = (batch.image[i].clone(), mask.clone(), label)
                    if workers == 0:
                        coins.append(coin)
            if workers == 0:
                reference[epoch] = items
            else:
                for key, (image, mask, label) in items.items():  # the same with 2 workers and batches of 3
                    assert torch.equal(image, reference[epoch][key][0]) and torch.equal(mask, reference[epoch][key][1])
                    assert label == reference[epoch][key][2]
    # the one coin: the realised fraction of anomalous draws is the ratio (within 3 standard deviations)
    n = len(coins)
    assert abs(sum(coins) / n - 0.5) < 3 * (0.25 / n) ** 0.5
    # an image labelled in two consecutive epochs carries a different anomaly in the second; the keys are
    # paths under a temporary folder, so which images those are changes from run to run: look at all 11 pairs
    changed = [(e, k) for e in range(11) for k in reference[e] if reference[e][k][2] and reference[e + 1][k][2]]
    assert changed and all(not torch.equal(reference[e][k][0], reference[e + 1][k][0]) for e, k in changed)


def test_on_device_callback_matches_the_dataset_path(tiny_folder):
    tiny_folder.setup()
    synth = create_synthesizer("perlin_texture")
    dataset_path = SyntheticAnomalyDataset(tiny_folder.train_data, synth, anomaly_ratio=0.5, seed=7)
    callback = SynthesizeOnDevice(synth, anomaly_ratio=0.5, seed=7)
    batch = tiny_folder.train_data.collate_fn([tiny_folder.train_data[i] for i in range(len(tiny_folder.train_data))])
    clean = batch.image.clone()

    class _Trainer:
        current_epoch = 0

    callback.on_train_batch_start(_Trainer(), None, batch, 0)
    items = [dataset_path[i] for i in range(len(dataset_path))]
    collated = dataset_path.collate_fn(items)
    assert collated.gt_label.dtype == batch.gt_label.dtype == torch.bool
    for i, item in enumerate(items):
        assert item.image_path == batch.image_path[i]
        assert torch.equal(item.image, batch.image[i])
        assert torch.equal(item.gt_mask, batch.gt_mask[i])
        assert bool(item.gt_label) == bool(batch.gt_label[i])
    assert torch.equal(batch.source_image, clean)
    # both paths keep the params that replay the batch
    assert collated.synthesis_params.keys() == batch.synthesis_params.keys()
    for key, value in batch.synthesis_params.items():
        assert torch.equal(collated.synthesis_params[key].to(value.dtype), value)
    assert torch.equal(synth.apply(clean, batch.synthesis_params).image, batch.image)


def test_datamodule_replaces_only_the_training_split(tiny_folder):
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), anomaly_ratio=1.0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, SyntheticImageBatch) and batch.source_image is not None
    assert batch.gt_label.all()
    assert dm.val_data is tiny_folder.val_data and dm.test_data is tiny_folder.test_data
    test_batch = next(iter(dm.test_dataloader()))
    assert not hasattr(test_batch, "source_image") or test_batch.source_image is None
    assert dm.name == tiny_folder.name and dm.category == tiny_folder.category


def test_datamodule_rejects_bad_arguments(tiny_folder):
    synth = create_synthesizer("cutpaste")
    with pytest.raises(ValueError, match="AnomalibDataModule"):
        SyntheticAnomalyDataModule(object(), synth)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Synthesizer"):
        SyntheticAnomalyDataModule(tiny_folder, "cutpaste")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        SyntheticAnomalyDataModule(tiny_folder, synth, mode="lazy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reseed_every_epoch"):
        SyntheticAnomalyDataModule(tiny_folder, synth, mode="cached", reseed_every_epoch=True)
    with pytest.raises(ValueError, match="SynthesizeOnDevice"):
        SynthesizeOnDevice("cutpaste")  # type: ignore[arg-type]


def test_few_shot_keeps_a_seeded_subset_of_k_normal_images(tiny_folder):
    synth = create_synthesizer("cutpaste")
    dm = SyntheticAnomalyDataModule(tiny_folder, synth, num_shots=3, seed=5)
    dm.setup("fit")
    paths = sorted(dm.train_data[i].image_path for i in range(len(dm.train_data)))
    assert len(paths) == 3
    again = SyntheticAnomalyDataModule(tiny_folder, synth, num_shots=3, seed=5)
    again.setup("fit")
    assert sorted(again.train_data[i].image_path for i in range(3)) == paths
    other = SyntheticAnomalyDataModule(tiny_folder, synth, num_shots=3, seed=6)
    other.setup("fit")
    assert sorted(other.train_data[i].image_path for i in range(3)) != paths
    with pytest.raises(ValueError, match="num_shots"):
        bad = SyntheticAnomalyDataModule(tiny_folder, synth, num_shots=999)
        bad.setup("fit")


def test_repeats_give_each_image_several_different_anomalies(tiny_folder):
    synth = create_synthesizer("cutpaste")
    once = SyntheticAnomalyDataModule(tiny_folder, synth, anomaly_ratio=1.0, num_shots=2, seed=5)
    once.setup("fit")
    dm = SyntheticAnomalyDataModule(tiny_folder, synth, anomaly_ratio=1.0, num_shots=2, seed=5, repeats=3)
    dm.setup("fit")
    assert len(dm.train_data) == 6
    items = [dm.train_data[i] for i in range(6)]
    # repeat 0 is the plain item; the other repeats show the same source image with other anomalies
    for i in range(2):
        assert torch.equal(items[i].image, once.train_data[i].image)
        for r in (1, 2):
            assert torch.equal(items[i + 2 * r].source_image, items[i].source_image)
            assert not torch.equal(items[i + 2 * r].image, items[i].image)
    with pytest.raises(IndexError):
        dm.train_data[6]
    with pytest.raises(ValueError, match="repeats"):
        SyntheticAnomalyDataModule(tiny_folder, synth, repeats=0)


def test_batches_split_back_into_items_with_their_params(wrapped):
    batch = wrapped.collate_fn([wrapped[i] for i in range(3)])
    items = list(batch)  # what Lightning does to find the batch size
    assert len(items) == 3
    for i, item in enumerate(items):
        assert item.synthesis_params.keys() == batch.synthesis_params.keys()
        for key, value in item.synthesis_params.items():
            assert torch.equal(value, batch.synthesis_params[key][i])

"""The synthesis cache: keys, atomic entries, resume after SIGKILL, DDP builds, corruption."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata

from anomalysynth.datamodules import (
    CacheCorruptError,
    SynthesisCache,
    SyntheticAnomalyDataModule,
    SyntheticAnomalyDataset,
)
from anomalysynth.datamodules.cache import (
    SynthesisPredictor,
    build_with_trainer,
    make_entry,
    read_entry,
    write_entry,
)
from anomalysynth.synth import create_synthesizer
from tests.conftest import anomalyany_kwargs, quiet_trainer
from tests.datamodules.recording import RecordingCutPaste, TinyModel, image_digest, read_records
from tests.gan.tiny_hybrid import save_tiny_checkpoint

DATA_YAML = """
class_path: anomalysynth.datamodules.SyntheticAnomalyDataModule
init_args:
  datamodule:
    class_path: anomalysynth.datamodules.DemoDataModule
    init_args: {{category: brick, root: {root}, image_size: 48, num_train: 10, num_test_good: 2, num_defects: 1}}
  synthesizer: {{class_path: anomalysynth.synth.CutPaste}}
  anomaly_ratio: 0.5
  mode: cached
  cache_dir: {cache}
  seed: 0
"""


@pytest.fixture
def source(tiny_folder):
    tiny_folder.setup()
    return SyntheticAnomalyDataset(tiny_folder.train_data, create_synthesizer("cutpaste"), anomaly_ratio=0.5)


def bank_contents(bank: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((bank / "entries").iterdir()) if not p.name.startswith(".")}


def test_bank_equals_the_on_the_fly_items(tmp_path, source):
    cache = SynthesisCache(tmp_path)
    bank = cache.build(source, progress=False)
    cached = cache.dataset(source)
    assert len(cached) == len(source)
    for i in range(len(source)):
        a, b = source[i], cached[i]
        assert torch.equal(a.image, b.image) and torch.equal(a.gt_mask, b.gt_mask)
        assert torch.equal(a.source_image, b.source_image) and bool(a.gt_label) == bool(b.gt_label)
    assert (bank / "manifest.json").is_file()
    assert not [p for p in (bank / "entries").iterdir() if p.name.startswith(".")], "no temporary files left"


def test_changed_config_or_seed_never_reuses_a_bank(source, tiny_folder):
    key = SynthesisCache.key(source)
    other_synth = SyntheticAnomalyDataset(source.dataset, create_synthesizer("cutpaste", area_ratio=(0.05, 0.1)), 0.5)
    other_seed = SyntheticAnomalyDataset(source.dataset, source.synthesizer, 0.5, seed=1)
    other_ratio = SyntheticAnomalyDataset(source.dataset, source.synthesizer, 0.6)
    keys = {key, *(SynthesisCache.key(s) for s in (other_synth, other_seed, other_ratio))}
    assert len(keys) == 4
    assert SynthesisCache.key(source) == key


def test_a_new_package_version_never_reuses_a_bank(source, monkeypatch):
    import anomalysynth

    key = SynthesisCache.key(source)
    monkeypatch.setattr(anomalysynth, "__version__", anomalysynth.__version__ + ".post1")
    assert SynthesisCache.key(source) != key


def _texture_folder(root: Path) -> Path:
    from PIL import Image

    root.mkdir()
    for i, photo in enumerate([skdata.brick(), skdata.grass(), skdata.gravel()]):
        Image.fromarray(np.asarray(photo)[:32, :32]).save(root / f"{i}.png")
    return root


def test_a_changed_texture_folder_never_reuses_a_bank(tmp_path, source):
    from PIL import Image

    folder = _texture_folder(tmp_path / "textures")

    def key() -> str:
        synth = create_synthesizer("perlin_texture", texture_dir=str(folder))
        return SynthesisCache.key(SyntheticAnomalyDataset(source.dataset, synth, 0.5))

    first = key()
    assert key() == first  # the same content, the same key
    changed = np.asarray(Image.open(folder / "1.png")).copy()
    changed[0, 0] ^= 1  # one pixel, same name, same size
    Image.fromarray(changed).save(folder / "1.png")
    second = key()
    assert second != first
    Image.fromarray(changed).save(folder / "3.png")  # a texture added
    assert key() not in (first, second)


def test_an_entry_rename_is_synced_to_its_folder(tmp_path, source, monkeypatch):
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        info = os.fstat(fd)
        events.append(("fsync-dir" if stat.S_ISDIR(info.st_mode) else "fsync-file", info.st_ino))
        real_fsync(fd)

    def replace(src, dst) -> None:  # type: ignore[no-untyped-def]
        real_replace(src, dst)
        events.append(("replace", Path(dst).name))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    entry = make_entry(source, 0)
    write_entry(tmp_path / "bank", 0, entry)
    folder = os.stat(tmp_path / "bank" / "entries").st_ino
    replaced = [i for i, e in enumerate(events) if e[0] == "replace"]
    assert [events[i][1] for i in replaced] == ["00000000.pt", "00000000.sha256"]
    for i in replaced:  # each rename is followed by a sync of the entries folder
        assert ("fsync-dir", folder) in events[i + 1 :]
        assert events[i + 1] == ("fsync-dir", folder)


def test_truncated_or_altered_entries_are_detected(tmp_path, source):
    cache = SynthesisCache(tmp_path)
    bank = cache.build(source, progress=False)
    dataset = cache.dataset(source)
    entry = bank / "entries" / "00000003.pt"
    entry.write_bytes(entry.read_bytes()[:100])
    with pytest.raises(CacheCorruptError, match=r"00000003\.pt"):
        dataset[3]
    dataset[2]  # the others still read
    entry.unlink()
    with pytest.raises(CacheCorruptError, match=r"00000003\.pt"):
        read_entry(bank, 3)


def test_cached_datamodule_builds_once_and_trains_from_the_bank(tmp_path, tiny_folder):
    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), mode="cached", cache_dir=tmp_path)
    dm.setup("fit")
    banks = list(tmp_path.iterdir())
    assert len(banks) == 1 and (banks[0] / "manifest.json").is_file()
    stamp = (banks[0] / "manifest.json").stat().st_mtime_ns
    batch = next(iter(dm.train_dataloader()))
    assert batch.source_image is not None
    dm2 = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("cutpaste"), mode="cached", cache_dir=tmp_path)
    dm2.setup("fit")
    assert (banks[0] / "manifest.json").stat().st_mtime_ns == stamp


def _cache_command(tmp_path: Path, cache: Path, *extra: str) -> list[str]:
    config = tmp_path / "data.yaml"
    config.write_text(DATA_YAML.format(root=tmp_path / "demo", cache=cache))
    return [sys.executable, "-m", "anomalysynth.cli", "cache", "--data", str(config), *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONWARNINGS"] = "ignore"
    return env


@pytest.mark.slow
def test_ddp_build_with_two_processes_equals_a_single_process_build(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run(_cache_command(tmp_path, single), check=True, env=_env(), capture_output=True, timeout=600)
    cmd = _cache_command(tmp_path, double, "--trainer.devices", "2", "--trainer.strategy", "ddp", "--batch_size", "2")
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (bank_single,) = list(single.iterdir())
    (bank_double,) = list(double.iterdir())
    assert bank_single.name == bank_double.name
    assert bank_contents(bank_single) == bank_contents(bank_double)
    assert (bank_double / "manifest.json").read_text() == (bank_single / "manifest.json").read_text()


@pytest.mark.slow
def test_build_killed_half_way_resumes_to_the_same_bank(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_cache_command(tmp_path, reference), check=True, env=_env(), capture_output=True, timeout=600)
    (bank_ref,) = list(reference.iterdir())
    expected = bank_contents(bank_ref)
    # slow the build down so it can be killed half way: one sample per predict step
    proc = subprocess.Popen(
        _cache_command(tmp_path, killed, "--batch_size", "1"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        written = list(killed.glob("*/entries/*.sha256"))
        if len(written) >= 4 or proc.poll() is not None:
            break
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (bank_killed,) = list(killed.iterdir())
    assert not (bank_killed / "manifest.json").exists(), "the build was killed before it finished"
    subprocess.run(_cache_command(tmp_path, killed), check=True, env=_env(), capture_output=True, timeout=600)
    assert bank_contents(bank_killed) == expected
    assert (bank_killed / "manifest.json").is_file()


# ---------------------------------------------------------------------- on the device, sharded over ranks
def _recording_source(tiny_folder, log_dir: Path) -> SyntheticAnomalyDataset:
    tiny_folder.setup()
    synth = RecordingCutPaste()
    synth.log_dir = str(log_dir)
    return SyntheticAnomalyDataset(tiny_folder.train_data, synth, anomaly_ratio=0.5)


def _digest_to_index(source: SyntheticAnomalyDataset) -> dict[str, int]:
    return {image_digest(source.source(i)[0]): i for i in range(len(source))}


def test_the_predictor_owns_the_synthesizer_so_device_moves_reach_it(tmp_path, tiny_folder):
    source = _recording_source(tiny_folder, tmp_path / "log")
    predictor = SynthesisPredictor(source, tmp_path / "bank")
    assert any(m is source.synthesizer for m in predictor.modules())
    predictor.to(torch.float64)
    assert source.synthesizer.probe.dtype == torch.float64
    predictor.to("meta")
    assert source.synthesizer.probe.is_meta
    # the DataLoader yields images and keys only: its workers never get the synthesizer
    loader_fn = predictor.block_loader_fn()
    assert not any(isinstance(v, torch.nn.Module) for v in vars(loader_fn.source).values())


def test_entries_are_synthesized_in_whole_blocks_and_equal_single_item_synthesis(tmp_path, tiny_folder):
    source = _recording_source(tiny_folder, tmp_path / "log")
    bank = SynthesisCache(tmp_path / "banks").build(source, progress=False, batch_size=4)
    records = read_records(tmp_path / "log")
    assert [r["batch"] for r in records] == [4, 4, 2]  # blocks of 4, not one image at a time
    assert all(r["images_device"] == r["probe_device"] for r in records)
    for i in range(len(source)):
        alone = make_entry(source, i)
        entry = read_entry(bank, i)
        for name in ("image", "mask", "label", "strength", "source_image"):
            assert torch.equal(alone[name], entry[name]), name


@pytest.mark.parametrize("name", ["anomalyhybrid", "anomalyany"])
def test_model_synthesizers_build_their_banks_through_the_predictor_in_blocks(tmp_path, tiny_folder, name, request):
    """AnomalyHybrid's and AnomalyAny's networks are moved and run by the predictor like any synthesizer."""
    if name == "anomalyhybrid":
        kwargs = {"checkpoint": str(save_tiny_checkpoint(tmp_path))}
    else:
        kwargs = anomalyany_kwargs(request.getfixturevalue("tiny_sd"))
    tiny_folder.setup()
    synthesizer = create_synthesizer(name, **kwargs)
    source = SyntheticAnomalyDataset(torch.utils.data.Subset(tiny_folder.train_data, range(5)), synthesizer, 1.0)
    predictor = SynthesisPredictor(source, tmp_path / "probe")
    assert any(m is synthesizer for m in predictor.modules())
    predictor.to(torch.float64)  # the networks follow the predictor
    assert all(p.dtype == torch.float64 for p in synthesizer.parameters())
    predictor.to(torch.float32)
    bank = SynthesisCache(tmp_path / "banks").build(source, progress=False, batch_size=2)
    assert len([n for n in bank_contents(bank) if n.endswith(".pt")]) == len(source)
    for i in range(len(source)):
        alone = make_entry(source, i)
        entry = read_entry(bank, i)
        assert bool(entry["label"]) and entry["mask"].any()
        for field in ("image", "mask", "label", "source_image"):
            assert torch.equal(alone[field], entry[field]), (i, field)
        changed = (entry["image"] != entry["source_image"]).any(dim=0)
        assert not changed[entry["mask"][0] == 0].any(), "pixels outside the mask are the source's"


def _shares(records: list[dict], digests: dict[str, int]) -> dict[int, list[int]]:
    shares: dict[int, list[int]] = {}
    for r in records:
        shares.setdefault(r["rank"], []).extend(digests[d] for d in r["digests"])
    return shares


# spawn, not fork: a forked rank inherits the parent's busy thread pools (numba, OpenMP) and can deadlock
STRATEGIES = [pytest.param("ddp_spawn", marks=pytest.mark.slow)]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_processes_build_the_one_process_bank_file_for_file(tmp_path, tiny_folder, strategy):
    source = _recording_source(tiny_folder, tmp_path / "log1")
    single = SynthesisCache(tmp_path / "one").build(source, progress=False, batch_size=3)
    source.synthesizer.log_dir = str(tmp_path / "log2")
    trainer_kwargs = {"accelerator": "cpu", "devices": 2, "strategy": strategy, "enable_progress_bar": False}
    double = build_with_trainer(SynthesisCache(tmp_path / "two"), source, trainer_kwargs, batch_size=3)
    assert single.name == double.name
    assert bank_contents(single) == bank_contents(double)
    assert (single / "manifest.json").read_bytes() == (double / "manifest.json").read_bytes()
    records = read_records(tmp_path / "log2")
    assert len({r["pid"] for r in records}) == 2
    assert sorted(r["batch"] for r in records) == [1, 3, 3, 3]  # whole blocks on the device
    assert all(r["images_device"] == r["probe_device"] for r in records)
    shares = _shares(records, _digest_to_index(source))
    # blocks of 3 dealt to the ranks in turn: no entry made twice, none left out
    assert shares == {0: [0, 1, 2, 6, 7, 8], 1: [3, 4, 5, 9]}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cached_datamodule_under_ddp_builds_each_entry_once_on_its_rank(tmp_path, tiny_folder, strategy):
    reference = SynthesisCache(tmp_path / "one").build(
        _recording_source(tiny_folder, tmp_path / "log1"), progress=False, batch_size=3
    )
    synth = RecordingCutPaste()
    synth.log_dir = str(tmp_path / "log2")
    dm = SyntheticAnomalyDataModule(
        tiny_folder, synth, mode="cached", cache_dir=tmp_path / "banks", cache_batch_size=3, num_workers=0
    )
    trainer = quiet_trainer(tmp_path, devices=2, strategy=strategy, max_steps=1, limit_val_batches=0)
    trainer.fit(TinyModel(), datamodule=dm)
    (bank,) = list((tmp_path / "banks").iterdir())
    assert bank.name == reference.name
    assert bank_contents(bank) == bank_contents(reference)
    assert (bank / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()
    tiny_folder.setup()
    digests = _digest_to_index(SyntheticAnomalyDataset(tiny_folder.train_data, synth, 0.5))
    records = read_records(tmp_path / "log2")
    assert len({r["pid"] for r in records}) == 2
    assert sorted(r["batch"] for r in records) == [1, 3, 3, 3]  # whole blocks, each made once
    assert _shares(records, digests) == {0: [0, 1, 2, 6, 7, 8], 1: [3, 4, 5, 9]}

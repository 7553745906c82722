"""The synthesis cache: keys, atomic entries, resume after SIGKILL, DDP builds, corruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from anomalysynth.datamodules import (
    CacheCorruptError,
    SynthesisCache,
    SyntheticAnomalyDataModule,
    SyntheticAnomalyDataset,
)
from anomalysynth.datamodules.cache import read_entry
from anomalysynth.synth import create_synthesizer

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

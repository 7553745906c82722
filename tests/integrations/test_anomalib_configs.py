"""The YAML route: configs/anomalib/*.yaml build offline and install the synthesizer."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.cli import LightningCLI

from anomalysynth.integrations.anomalib import UseSynthesizer
from anomalysynth.integrations.anomalib_generators import FeatureNoiseOff, ImageAnomalyGenerator
from tests.conftest import photo_batch

ROOT = Path(__file__).resolve().parents[2]


def parse(config: str, tmp_path) -> LightningCLI:
    args = [
        "-c",
        str(ROOT / "configs" / "anomalib" / config),
        f"--data.init_args.root={tmp_path / 'demo'}",
        "--data.init_args.image_size=48",
        "--data.init_args.num_train=4",
        "--data.init_args.num_test_good=1",
        "--data.init_args.num_defects=1",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    return LightningCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=False,
        save_config_callback=None,
    )


def test_draem_config_trains_offline_on_cutpaste(tmp_path, monkeypatch, offline):
    monkeypatch.chdir(ROOT)  # dtd_dir is relative to the repository root
    cli = parse("draem_cutpaste.yaml", tmp_path)
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, UseSynthesizer))
    assert callback.synthesizer.name == "cutpaste" and callback.anomaly_ratio == 0.5
    callback.setup(cli.trainer, cli.model, "fit")
    assert isinstance(cli.model.augmenter, ImageAnomalyGenerator)
    torch.manual_seed(0)
    images = photo_batch(2, 3, size=32)
    augmented, mask = cli.model.augmenter(images)
    assert augmented.shape == images.shape and mask.shape == (2, 1, 32, 32)
    reconstruction, prediction = cli.model.model(augmented)
    loss = cli.model.loss(images, reconstruction, mask, prediction)
    loss.backward()
    assert torch.isfinite(loss)


def test_supersimplenet_config_uses_nsa(tmp_path, offline):
    cli = parse("supersimplenet_nsa.yaml", tmp_path)
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, UseSynthesizer))
    assert callback.synthesizer.name == "nsa" and callback.synthesizer.foreground == "otsu"
    callback.setup(cli.trainer, cli.model, "fit")
    assert isinstance(cli.model.model.anomaly_generator, FeatureNoiseOff)


@pytest.mark.parametrize("name", ["draem_cutpaste.yaml", "supersimplenet_nsa.yaml"])
def test_configs_name_their_commands(name):
    text = (ROOT / "configs" / "anomalib" / name).read_text()
    assert f"fit -c configs/anomalib/{name}" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "name"), [("anomalib", "draem_cutpaste.yaml"), ("anomalysynth", "supersimplenet_nsa.yaml")]
)
def test_configs_fit_through_the_command_lines(command, name, tmp_path):
    """`anomalib fit -c ...` and `anomalysynth fit -c ...` train one batch of a config, offline."""
    import subprocess
    import sys

    entry = "from anomalib.cli.cli import main" if command == "anomalib" else "from anomalysynth.cli import main"
    cmd = [
        sys.executable,
        "-c",
        f"import sys; {entry}; sys.exit(main())",
        "fit",
        "-c",
        str(ROOT / "configs" / "anomalib" / name),
        f"--data.init_args.root={tmp_path / 'demo'}",
        "--data.init_args.image_size=48",
        "--data.init_args.num_train=8",
        "--data.init_args.num_test_good=2",
        "--data.init_args.num_defects=1",
        "--trainer.fast_dev_run=true",
    ]
    if name.startswith("draem"):
        cmd.append(f"--model.init_args.dtd_dir={ROOT / 'configs' / 'anomalib' / 'no_textures'}")
    # the config's default_root_dir is relative: outputs land in tmp_path
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "Downloading" not in output  # DRAEM's DTD download would announce itself
    assert "fast_dev_run" in output  # Lightning ran the one-batch fit

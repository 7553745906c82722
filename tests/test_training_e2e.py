"""End to end: anomalib models trained on synthetic anomalies (nothing downloaded)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_supersimplenet_trains_and_tests_through_engine(tiny_folder, tmp_path):
    from anomalib.engine import Engine
    from anomalib.models import Supersimplenet

    from anomalysynth.datamodules import SyntheticAnomalyDataModule
    from anomalysynth.synth import create_synthesizer

    dm = SyntheticAnomalyDataModule(tiny_folder, create_synthesizer("perlin_texture"), anomaly_ratio=0.5)
    model = Supersimplenet(backbone="efficientnet_lite0.offline_in1k", layers=["blocks.2", "blocks.4"], supervised=True)
    engine = Engine(max_epochs=1, accelerator="cpu", devices=1, default_root_dir=tmp_path, logger=False)
    engine.fit(model=model, datamodule=dm)
    (metrics,) = engine.test(model=model, datamodule=dm)
    assert {"image_AUROC", "pixel_AUROC"} <= set(metrics)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["anomalib", "lightning"])
def test_config_runs_with_both_clis(command, tmp_path):
    args = [
        "fit",
        "-c",
        str(ROOT / "configs" / "supersimplenet_synthetic.yaml"),
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "1",
    ]
    if command == "lightning":
        cmd = [sys.executable, "-c", "import sys; from anomalysynth.cli import lightning_main; lightning_main()", *args]
    else:
        cmd = [sys.executable, "-c", "import sys; from anomalib.cli.cli import main; main()", *args]
    # the config's default_root_dir is relative: outputs land in tmp_path
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "results").is_dir()


@pytest.mark.slow
def test_realnet_config_fits_tests_and_reloads_its_checkpoint(tmp_path):
    import torch

    def run(*args: str) -> str:
        cmd = [sys.executable, "-c", "from anomalysynth.cli import lightning_main; lightning_main()", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    config = str(ROOT / "configs" / "realnet.yaml")
    quick = ["--trainer.max_epochs", "1", "--trainer.min_steps", "0", "--trainer.limit_train_batches", "2"]
    fitted = run("fit", "-c", config, *quick)
    checkpoint = tmp_path / "results" / "realnet" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # anomalib 2.7 loads this way
    assert bool(state["state_dict"]["afs_done"]), "AFS ran and its indices are in the checkpoint"
    assert bool(state["state_dict"]["model.feature_stats_done"]), "feature statistics were measured and saved"
    assert not torch.equal(
        state["state_dict"]["model.feature_std_0"], torch.ones_like(state["state_dict"]["model.feature_std_0"])
    )
    tested = run("test", "-c", config, "--ckpt_path", str(checkpoint))
    # fit tests the trained module (test_after_fit); the saved checkpoint reproduces its numbers
    assert set(printed_metrics(fitted)) == {"image_AUROC", "pixel_AUROC", "pixel_AUPRO"}
    assert printed_metrics(tested) == pytest.approx(printed_metrics(fitted), abs=1e-6)
    # few-shot fine-tuning from that checkpoint: 2 images, each with 2 anomalies per epoch
    fewshot = str(ROOT / "configs" / "fewshot_realnet.yaml")
    args = ["--data.init_args.num_shots", "2", "--data.init_args.repeats", "2", "--trainer.max_epochs", "1"]
    run("fit", "-c", fewshot, "--model.init_args.init_weights", str(checkpoint), *args)
    tuned = torch.load(tmp_path / "results" / "fewshot_realnet" / "checkpoints" / "last.ckpt", weights_only=True)
    for k in range(4):
        key = f"model.selection_{k}"
        assert torch.equal(tuned["state_dict"][key], state["state_dict"][key]), "AFS indices came with the weights"
        key = f"model.feature_std_{k}"
        assert torch.equal(tuned["state_dict"][key], state["state_dict"][key]), "statistics are not re-measured"


@pytest.mark.slow
def test_sdas_diffusion_config_trains_and_its_checkpoint_feeds_the_bank(tmp_path):
    from anomalysynth.cli import main
    from anomalysynth.diffusion import SDASBank

    cmd = [sys.executable, "-c", "from anomalysynth.cli import lightning_main; lightning_main()"]
    config = str(ROOT / "configs" / "sdas_diffusion.yaml")
    done = subprocess.run(
        [*cmd, "fit", "-c", config, "--trainer.max_steps", "8"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = tmp_path / "results" / "sdas_diffusion" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    assert sorted((tmp_path / "results" / "sdas_diffusion" / "samples").glob("*.png")), "a sample grid was written"
    args = ["cache", "sdas", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "bank"), "--num", "2"]
    assert main([*args, "--steps", "2"]) == 0
    assert len(SDASBank(tmp_path / "bank")) == 2


def test_gpu_sdas_config_parses(tmp_path):
    cmd = [sys.executable, "-c", "from anomalysynth.cli import lightning_main; lightning_main()"]
    config = str(ROOT / "configs" / "sdas_diffusion_256_gpu.yaml")
    done = subprocess.run([*cmd, "fit", "-c", config, "--print_config"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NormalImageDiffusion" in done.stdout and "image_size: 256" in done.stdout


def printed_metrics(stdout: str) -> dict[str, float]:
    """Metrics of Lightning's printed test table (rows like ``| image_AUROC | 0.82 |``)."""
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.replace("\u2502", "|").split("|") if c.strip()]
        if len(cells) == 2 and ("AUROC" in cells[0] or "AUPRO" in cells[0]):
            found[cells[0]] = float(cells[1])
    return found


@pytest.mark.slow
def test_anomalyhybrid_config_trains_on_a_folder_and_its_checkpoint_synthesizes(tiny_tree, tmp_path):
    import torch

    from anomalysynth.synth import create_synthesizer

    cmd = [
        sys.executable,
        "-c",
        "from anomalysynth.cli import main; main()",
        "fit",
        "-c",
        str(ROOT / "configs" / "anomalyhybrid.yaml"),
        "--data",
        str(ROOT / "configs" / "data" / "anomalyhybrid_folder.yaml"),
        "--data.init_args.root",
        str(tiny_tree),
        "--data.init_args.abnormal_dir",
        "[test/scratch]",
        "--data.init_args.mask_dir",
        "[ground_truth/scratch]",
        "--data.init_args.num_workers",
        "0",
        "--trainer.max_steps",
        "4",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    checkpoint = tmp_path / "results" / "anomalyhybrid" / "checkpoints" / "last.ckpt"
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4  # two batches: a generator and a discriminator step each
    synthesizer = create_synthesizer("anomalyhybrid", checkpoint=str(checkpoint))
    images = torch.rand(2, 3, 48, 48)
    out = synthesizer(images, generator=torch.Generator().manual_seed(0))
    assert out.image.shape == images.shape
    outside = out.mask.expand_as(images) == 0
    assert torch.equal(out.image[outside], images[outside])

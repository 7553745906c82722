"""The command line: `preview`, the two console spellings of the LightningCLI, the shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from anomalysynth.cli import main
from anomalysynth.datamodules.demo import build_demo_dataset

CONFIGS = Path(__file__).parents[1] / "configs"


def test_preview_writes_a_grid(tmp_path, capsys):
    tree = build_demo_dataset(tmp_path / "demo", "gravel", image_size=48, num_train=4, num_test_good=1, num_defects=1)
    out = tmp_path / "grid.png"
    code = main(
        ["preview", "--synthesizer", "memseg", "--data", str(tree), "--out", str(out), "--num", "3", "--size", "48"]
    )
    assert code == 0
    grid = Image.open(out)
    assert grid.size[0] == 3 * (48 + 2) + 2 and grid.size[1] > 3 * 48
    assert "wrote" in capsys.readouterr().out


def test_preview_is_seeded(tmp_path):
    tree = build_demo_dataset(tmp_path / "demo", "gravel", image_size=48, num_train=4, num_test_good=1, num_defects=1)
    paths = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        paths.append(tmp_path / f"{name}.png")
        args = ["preview", "--synthesizer", "cutpaste", "--data", str(tree), "--num", "2", "--size", "48"]
        main([*args, "--out", str(paths[-1]), "--seed", str(seed)])
    data = [p.read_bytes() for p in paths]
    assert data[0] == data[1] and data[0] != data[2]


def test_preview_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit):
        main(["preview", "--synthesizer", "nope"])
    with pytest.raises(SystemExit, match="JSON"):
        main(["preview", "--synthesizer", "cutpaste", "--data", str(tmp_path), "--synth-args", "{bad"])
    with pytest.raises(ValueError, match="No images"):
        main(["preview", "--synthesizer", "cutpaste", "--data", str(tmp_path)])


def test_both_console_scripts_are_installed_and_anomalysynth_fit_is_the_lightning_cli(capsys, monkeypatch):
    """``anomalysynth fit`` reaches the same LightningCLI as ``lightning fit`` (the always-safe spelling)."""
    from importlib.metadata import entry_points

    from anomalysynth.cli import lightning_main

    scripts = {e.name: e.value for e in entry_points(group="console_scripts") if e.value.startswith("anomalysynth.")}
    assert scripts == {"anomalysynth": "anomalysynth.cli:main", "lightning": "anomalysynth.cli:lightning_main"}
    config = str(CONFIGS / "realnet.yaml")
    monkeypatch.setattr("sys.argv", ["anomalysynth"])  # as a console script with these arguments sees it
    printed = []
    for run in (lambda a: main(["fit", *a]), lambda a: lightning_main(["fit", *a])):
        with pytest.raises(SystemExit) as exit_info:
            run(["-c", config, "--print_config"])
        assert exit_info.value.code in (0, None)
        printed.append(capsys.readouterr().out)
    assert "class_path: anomalysynth.models.RealNet" in printed[0]
    assert printed[0] == printed[1]


@pytest.mark.parametrize(
    "configs",
    [
        ["realnet_paper.yaml"],
        ["realnet_deeppcb.yaml"],
        ["realnet.yaml", "data/folder.yaml"],
        ["afs_padim.yaml"],
        ["anomalyhybrid_256_gpu.yaml"],
    ],
)
def test_shipped_configs_parse_against_the_classes_they_name(configs, capsys, monkeypatch):
    """Every init argument a config sets exists on its class (jsonargparse checks them without training)."""
    args = ["fit", "-c", str(CONFIGS / configs[0])]
    if len(configs) > 1:
        args += ["--data", str(CONFIGS / configs[1])]
    monkeypatch.setattr("sys.argv", ["anomalysynth"])
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    assert "class_path:" in capsys.readouterr().out

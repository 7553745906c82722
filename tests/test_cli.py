"""The ``anomalysynth preview`` command."""

from __future__ import annotations

import pytest
from PIL import Image

from anomalysynth.cli import main
from anomalysynth.datamodules.demo import build_demo_dataset


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

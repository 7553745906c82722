"""`anomalysynth evaluate`: the realism report on a tiny MVTec-style tree, and its resumption."""

from __future__ import annotations

import csv
import json

import pytest

from anomalysynth.cli import main


def run(tree, out, *extra):
    args = [
        "evaluate",
        "--data",
        str(tree),
        "--out",
        str(out),
        "--num",
        "4",
        "--size",
        "48",
        "--repeats",
        "2",
        "--feature-size",
        "64",
    ]
    return main([*args, "--synthesizers", "cutpaste", "perlin_texture", *extra])


@pytest.mark.slow
def test_report_files_rows_and_resumption(tiny_tree, tmp_path, monkeypatch):
    out = tmp_path / "report"
    assert run(tiny_tree, out) == 0
    for name in ("report.md", "metrics.csv", "grid.png", "plots.png", "samples/cutpaste.png"):
        assert (out / name).is_file(), name
    with open(out / "metrics.csv") as handle:
        rows = {row["synthesizer"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"cutpaste", "perlin_texture", "real_defects"}
    assert "kid_mask_to_defects_effnet" in rows["cutpaste"]
    assert float(rows["cutpaste"]["num_anomalies"]) == 8  # 4 images x 2 draws, all anomalous
    assert not any(key.endswith(("_to_defects", "ic_lpips", "is")) for key in rows["cutpaste"]), "names carry the net"
    assert "kid_to_defects_effnet" in (out / "report.md").read_text()

    # finished synthesizers are skipped; a missing result is recomputed
    first = json.loads((out / "results" / "perlin_texture.json").read_text())
    (out / "results" / "cutpaste.json").unlink()
    import anomalysynth.synth as synth

    built = []
    original = synth.create_synthesizer
    monkeypatch.setattr(synth, "create_synthesizer", lambda name, **kw: built.append(name) or original(name, **kw))
    assert run(tiny_tree, out) == 0
    assert built == ["cutpaste"]
    assert json.loads((out / "results" / "perlin_texture.json").read_text()) == first
    # a changed setting re-computes
    built.clear()
    assert run(tiny_tree, out, "--seed", "1") == 0
    assert built == ["cutpaste", "perlin_texture"]


def test_plain_folder_has_no_defect_rows(tmp_path):
    import numpy as np
    from PIL import Image

    folder = tmp_path / "plain"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--num",
                "3",
                "--size",
                "40",
                "--synthesizers",
                "cutpaste",
            ]
        )
        == 0
    )
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "defects" not in header and "kid_to_normal_effnet" in header


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(SystemExit, match="Unknown synthesizers"):
        main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path), "--synthesizers", "nope"])
    with pytest.raises(SystemExit, match="synth-args"):
        main(["evaluate", "--data", str(tmp_path), "--out", str(tmp_path), "--synth-args", "[1]"])

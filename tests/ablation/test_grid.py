"""Grid expansion: the product of the axes, overrides in axis order, stable ids that follow the config."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from anomalysynth.ablation import load_grid
from tests.ablation.conftest import write_grid

ROOT = Path(__file__).resolve().parents[2]


def test_product_of_axes_with_levels_and_overrides(tmp_path):
    axes = {
        "synthesizer": {
            "cutpaste": {"data.init_args.synthesizer": {"class_path": "anomalysynth.synth.CutPaste"}},
            "perlin": {"data.init_args.synthesizer": {"class_path": "anomalysynth.synth.PerlinTextureBlend"}},
        },
        "strength": {"key": "data.init_args.synthesizer.init_args.opacity", "values": [[0.5, 1.0]]},
        "seed": {"key": "seed_everything", "values": [0, 1, 2]},
    }
    grid = load_grid(write_grid(tmp_path, axes))
    runs = grid.runs()
    assert len(runs) == 2 * 1 * 3
    assert [r.levels["seed"] for r in runs[:3]] == ["0", "1", "2"]  # the last axis varies fastest
    first = runs[0].config
    assert first["data"]["init_args"]["synthesizer"] == {
        "class_path": "anomalysynth.synth.CutPaste",
        "init_args": {"opacity": [0.5, 1.0]},  # the strength axis comes after the synthesizer it edits
    }
    assert first["model"]["class_path"].endswith("TinyDetector")  # the base is kept
    assert len({r.run_id for r in runs}) == len(runs)
    assert [r.run_id for r in load_grid(write_grid(tmp_path, axes)).runs()] == [r.run_id for r in runs]


def test_editing_the_base_changes_every_id(tmp_path):
    axes = {"seed": {"key": "seed_everything", "values": [0]}}
    before = load_grid(write_grid(tmp_path, axes)).runs()[0].run_id
    after = load_grid(write_grid(tmp_path, axes, model_args={"lr": 0.5})).runs()[0].run_id
    assert before != after and before.startswith("seed=0-") and after.startswith("seed=0-")


def test_bad_axes_and_keys_are_named(tmp_path):
    with pytest.raises(ValueError, match="axis 'seed'"):
        load_grid(write_grid(tmp_path, {"seed": [0, 1]}))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"axes": {}, "basee": {}}))
    with pytest.raises(ValueError, match="unknown keys"):
        load_grid(path)


@pytest.mark.parametrize(("name", "runs"), [("realnet_sources.yaml", 15), ("afs.yaml", 9)])
def test_shipped_grids_expand_and_name_importable_classes(name, runs, tmp_path):
    grid = load_grid(ROOT / "configs" / "ablation" / name, output=tmp_path)
    specs = grid.runs()
    assert len(specs) == runs
    for spec in specs:
        assert "test_after_fit" not in spec.config
        assert spec.config["model"]["class_path"] == "anomalysynth.models.RealNet"
        for path in class_paths(spec.config):
            module, _, attribute = path.rpartition(".")
            assert hasattr(importlib.import_module(module), attribute), path


def class_paths(node):
    if isinstance(node, dict):
        if isinstance(node.get("class_path"), str):
            yield node["class_path"]
        for value in node.values():
            yield from class_paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from class_paths(value)

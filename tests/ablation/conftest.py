"""A tiny ablation grid over the tiny detector (seconds per run)."""

from __future__ import annotations

import pytest
import yaml

TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "max_epochs": 2,
    "enable_progress_bar": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "logger": False,
}


def write_grid(folder, axes, name="tiny", model_args=None):
    grid = {
        "name": name,
        "output": str(folder / "out"),
        "base": {
            "seed_everything": 0,
            "trainer": TRAINER,
            "model": {"class_path": "tests.ablation.tiny_detector.TinyDetector", "init_args": model_args or {}},
            "data": {"class_path": "tests.ablation.tiny_detector.TinyData"},
        },
        "metrics": ["image_AUROC"],
        "axes": axes,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.fixture
def small_grid(tmp_path):
    axes = {
        "strength": {"key": "data.init_args.strength", "values": [0.5, 2.0]},
        "seed": {"key": "seed_everything", "values": [0, 1]},
    }
    return write_grid(tmp_path, axes)

"""The diffusion sample-grid callback writes images during training."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from anomalysynth.callbacks import DiffusionSampleGrid
from tests.conftest import quiet_trainer, tiny_module


def test_grids_are_written_every_n_epochs_and_at_the_end(tmp_path):
    callback = DiffusionSampleGrid(every_n_epochs=2, strengths=(0.0, 0.2), num_images=3, num_steps=2, scale=1)
    trainer = quiet_trainer(tmp_path, max_epochs=3, callbacks=[callback])
    trainer.fit(tiny_module().train(), torch.utils.data.DataLoader(torch.rand(4, 3, 8, 8), batch_size=4))
    assert [p.name for p in callback.written] == ["epoch=0001.png", "epoch=0003.png"]
    with Image.open(callback.written[0]) as img:
        assert img.height == 2 * (8 + 2) + 2


def test_bad_interval():
    with pytest.raises(ValueError, match="every_n_epochs"):
        DiffusionSampleGrid(every_n_epochs=0)


def test_grids_are_written_atomically_and_read_back_exactly(tmp_path):
    import numpy as np

    from anomalysynth.files import save_png_atomic

    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = save_png_atomic(Image.fromarray(pixels), tmp_path / "sub" / "grid.png")
    with Image.open(path) as img:
        assert np.array_equal(np.asarray(img), pixels)
    assert [p.name for p in path.parent.iterdir()] == ["grid.png"]  # no temporary file left behind

"""The training sample grid of AnomalyHybrid."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from anomalysynth.gan import AnomalyHybridSampleGrid, HybridPipeline, hybrid_grid
from anomalysynth.gan.grid import COLUMNS
from tests.conftest import quiet_trainer
from tests.gan.tiny_hybrid import tiny_module


def test_grid_has_a_row_per_image_and_manipulation():
    module = tiny_module()
    grid = hybrid_grid(HybridPipeline(module.generator, module.conditions), torch.rand(2, 3, 32, 32), scale=1)
    rows, columns = 2 * 4, len(COLUMNS)
    assert grid.size == (52 + columns * 34 + 2, 14 + rows * 34 + 2)


def test_callback_writes_a_png_at_the_end_of_training(tmp_path):
    module = tiny_module()
    callback = AnomalyHybridSampleGrid(every_n_epochs=1, num_images=1, manipulations=["remove"], dirpath=str(tmp_path))
    trainer = quiet_trainer(tmp_path, max_steps=2, callbacks=[callback])
    trainer.fit(module, torch.utils.data.DataLoader(torch.rand(2, 3, 40, 40), batch_size=2))
    assert len(callback.written) == 1 and callback.written[0].is_file()
    with Image.open(callback.written[0]) as image:
        assert image.size[1] == 14 + 64 + 4
    assert module.generator.training  # the grid did not freeze the live generator
    assert any(p.requires_grad for p in module.generator.parameters())


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="manipulations"):
        AnomalyHybridSampleGrid(manipulations=["global"])
    with pytest.raises(ValueError, match="every_n_epochs"):
        AnomalyHybridSampleGrid(every_n_epochs=0)

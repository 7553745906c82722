"""AnomalyHybridGAN with Lightning: a two-step fit and the checkpoint round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalysynth.gan import AnomalyHybridGAN, load_pipeline
from tests.conftest import quiet_trainer
from tests.gan.tiny_hybrid import tiny_module


def parameters(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).clone()


def test_two_training_steps_on_the_demo_data_update_both_networks(tiny_folder, tmp_path):
    module = tiny_module()
    g0, d0 = parameters(module.generator), parameters(module.discriminator)
    # Lightning counts optimizer steps: two per batch (generator, discriminator)
    trainer = quiet_trainer(tmp_path, max_steps=4, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(module, datamodule=tiny_folder)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 2
    assert not torch.equal(parameters(module.generator), g0)
    assert not torch.equal(parameters(module.discriminator), d0)
    logged = trainer.logged_metrics
    assert {"train_loss_g", "train_loss_d", "train_gan_depth", "train_fm_edge"} <= set(logged)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in logged.values())


def test_depth_from_a_folder_follows_the_batch_paths(tiny_folder, tiny_tree, tmp_path):
    depth_dir = tmp_path / "depth"
    depth_dir.mkdir()
    for path in sorted((tiny_tree / "train" / "good").glob("*.png")):
        np.save(depth_dir / f"{path.stem}.npy", np.random.default_rng(0).random((48, 48)))
    module = tiny_module(depth_source="folder", depth_dir=str(depth_dir))
    trainer = quiet_trainer(tmp_path, max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=tiny_folder)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1
    with pytest.raises(ValueError, match="no image paths came with the batch"):
        module.training_pair(torch.rand(2, 3, 32, 32), 0)


def test_missing_depth_choice_fails_at_construction():
    with pytest.raises(ValueError, match="depth_source='pseudo'"):
        AnomalyHybridGAN(depth_source=None)
    with pytest.raises(ValueError, match="divisible by 8"):
        AnomalyHybridGAN(image_size=36, depth_source="pseudo")


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    module = tiny_module(perceptual_backbone="efficientnet_lite0")
    data = torch.utils.data.DataLoader(torch.rand(4, 3, 40, 40), batch_size=2)
    trainer = quiet_trainer(tmp_path, max_steps=2)
    trainer.fit(module, data)
    path = tmp_path / "hybrid.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert not any(k.startswith("perceptual.") for k in raw["state_dict"])  # the frozen network is not stored
    x = torch.rand(1, 3, 32, 32)
    depth, edge = torch.rand(1, 1, 32, 32), (torch.rand(1, 1, 32, 32) > 0.8).float()
    module.eval()
    with torch.no_grad():
        expected = module.generator.decode(x, depth, edge, "edge").image
        for loaded in (
            AnomalyHybridGAN.load_weights_only(path),
            AnomalyHybridGAN.load_from_checkpoint(path, weights_only=True),
            load_pipeline(path)[0],
        ):
            assert torch.equal(loaded.generator.decode(x, depth, edge, "edge").image, expected)
    with pytest.raises(ValueError, match="not an AnomalyHybridGAN checkpoint"):
        torch.save({"weights": 1}, tmp_path / "other.ckpt")
        load_pipeline(tmp_path / "other.ckpt")

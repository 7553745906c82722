"""The diffusion networks: one builder for the training module and the checkpoint loader."""

from __future__ import annotations

import inspect

import pytest
import torch

from anomalysynth.diffusion import NormalImageDiffusion, load_diffusion
from anomalysynth.diffusion.networks import build_networks


def test_the_builder_defaults_are_the_modules():
    module = inspect.signature(NormalImageDiffusion.__init__).parameters
    for name, parameter in inspect.signature(build_networks).parameters.items():
        assert module[name].default == parameter.default, name


def test_a_checkpoint_loads_the_modules_ema_weights(tiny_checkpoint):
    trained = NormalImageDiffusion.from_checkpoint(tiny_checkpoint)
    unet, scheduler = load_diffusion(tiny_checkpoint)
    ours, theirs = unet.state_dict(), trained.ema_unet.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # the EMA weights differ from the raw ones after training steps: the right copy was read
    assert not all(torch.equal(ours[k], trained.unet.state_dict()[k]) for k in ours)
    assert not unet.training and not any(p.requires_grad for p in unet.parameters())
    assert scheduler.config == trained.scheduler.config


def test_bad_shapes_and_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="attention_levels"):
        build_networks(block_out_channels=(8, 16), attention_levels=(True,))
    with pytest.raises(ValueError, match="divisible by 4"):
        build_networks(image_size=10, block_out_channels=(8, 16, 32), attention_levels=(False,) * 3)
    path = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a NormalImageDiffusion checkpoint"):
        load_diffusion(path)

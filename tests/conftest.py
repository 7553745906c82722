"""Shared fixtures: small real-looking images made from scikit-image's photographs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from skimage import data

from anomalysynth.datamodules.demo import build_demo_dataset


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def photo_batch(batch: int, channels: int, size: int = 64) -> torch.Tensor:
    """(B, C, size, size) float crops of real photographs, deterministic."""
    sources = [data.astronaut(), data.coffee(), data.chelsea(), data.immunohistochemistry()]
    out = []
    for i in range(batch):
        img = sources[i % len(sources)]
        y, x = (17 * i) % (img.shape[0] - size), (29 * i) % (img.shape[1] - size)
        crop = img[y : y + size, x : x + size].astype(np.float32) / 255
        tensor = torch.from_numpy(crop).permute(2, 0, 1)
        if channels == 1:
            tensor = (tensor * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        out.append(tensor.clamp(0, 1))
    return torch.stack(out)


@pytest.fixture
def rgb_batch() -> torch.Tensor:
    return photo_batch(8, 3)


@pytest.fixture
def gray_batch() -> torch.Tensor:
    return photo_batch(8, 1)


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    return build_demo_dataset(
        tmp_path_factory.mktemp("tiny_demo"), "brick", image_size=48, num_train=10, num_test_good=2, num_defects=1
    )


@pytest.fixture
def tiny_folder(tiny_tree):
    from anomalib.data import Folder

    defects = ["scratch", "inclusion", "dent"]
    return Folder(
        name="tiny",
        root=tiny_tree,
        normal_dir="train/good",
        normal_test_dir="test/good",
        abnormal_dir=[f"test/{d}" for d in defects],
        mask_dir=[f"ground_truth/{d}" for d in defects],
        train_batch_size=4,
        eval_batch_size=4,
        num_workers=0,
    )


def quiet_trainer(root, **kwargs) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints, progress bar or summary, writing under ``root``."""
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **kwargs,
    )


# -- tiny random-weight diffusion models (as diffusers' own tests build them) --


def tiny_module(seed: int = 0, **kwargs):
    from anomalysynth.diffusion import NormalImageDiffusion

    torch.manual_seed(seed)
    args = {"image_size": 8, "block_out_channels": (8, 16), "attention_levels": (False, True)}
    args.update(kwargs)
    module = NormalImageDiffusion(**args)
    # random weights make a non-trivial output (diffusers zero-inits nothing here, but be explicit)
    with torch.no_grad():
        for p in module.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    module.ema_unet.load_state_dict(module.unet.state_dict())
    return module.eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A real Lightning checkpoint of a tiny NormalImageDiffusion trained for 3 steps."""
    root = tmp_path_factory.mktemp("diffusion")
    module = tiny_module()
    data = torch.utils.data.DataLoader(torch.rand(12, 3, 16, 16), batch_size=4)
    trainer = quiet_trainer(root, max_steps=3)
    trainer.fit(module, data)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def sdas_texture_folder(tmp_path_factory):
    """A folder of texture images laid out as RealNet's released SIA bank (one category)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("sia") / "brick"
    root.mkdir()
    for i, img in enumerate([data.brick(), data.grass(), data.gravel()]):
        Image.fromarray(np.asarray(img)[:96, :96]).save(root / f"{i:03d}.png")
    return str(root)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """(pipeline_path, clip_path) of a tiny random-weight Stable Diffusion and CLIP on disk."""
    import diffusers
    import transformers

    from tests.tiny_sd import save_tiny_stable_diffusion

    diffusers.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    return save_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny_sd"))


def anomalyany_kwargs(tiny_sd) -> dict:
    """The tiny AnomalyAny used by the tests: 32-px SD, 16x16 attention, 2 of 4 steps."""
    sd, clip = tiny_sd
    return {
        "pipeline_path": str(sd),
        "clip_path": str(clip),
        "object_name": "brick wall",
        "num_steps": 2,
        "refine_steps": 1,
        "resolution": 32,
        "attention_resolution": 16,
        "gamma": 0.5,
    }

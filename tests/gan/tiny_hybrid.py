"""Tiny random-weight AnomalyHybrid models and checkpoints for the tests."""

from __future__ import annotations

from pathlib import Path

import torch

from anomalysynth.files import atomic_write_bytes, torch_bytes

TINY = {
    "image_size": 32,
    "generator_width": 4,
    "num_downsampling": 2,
    "num_resnet_blocks": 1,
    "discriminator_width": 4,
    "discriminator_layers": 2,
    "discriminator_scales": 2,
    "perceptual_backbone": "none",
    "depth_source": "pseudo",
    "edge_source": "sobel",  # Canny's hysteresis loop is the slowest part at test sizes
}


def tiny_module(seed: int = 0, **kwargs):
    """An ``AnomalyHybridGAN`` with a few thousand random weights."""
    from anomalysynth.gan import AnomalyHybridGAN

    torch.manual_seed(seed)
    return AnomalyHybridGAN(**{**TINY, **kwargs})


def save_tiny_checkpoint(folder: str | Path, seed: int = 0, **kwargs) -> Path:
    """A checkpoint laid out as Lightning writes it (state_dict + hyper_parameters), random weights."""
    module = tiny_module(seed, **kwargs)
    path = Path(folder) / f"tiny_anomalyhybrid_{seed}.ckpt"
    state = {k: v for k, v in module.state_dict().items() if not k.startswith("perceptual.")}
    atomic_write_bytes(path, torch_bytes({"state_dict": state, "hyper_parameters": dict(module.hparams)}))
    return path


def contract_kwargs(tmp_path_factory) -> dict:
    """What the shared contract suite passes to ``create_synthesizer("anomalyhybrid", ...)``."""
    cached = getattr(contract_kwargs, "_path", None)
    if cached is None or not Path(cached).is_file():
        cached = save_tiny_checkpoint(tmp_path_factory.mktemp("anomalyhybrid"))
        contract_kwargs._path = cached  # type: ignore[attr-defined]
    return {"checkpoint": str(cached)}

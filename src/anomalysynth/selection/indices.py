"""AFS channel indices on disk: one ``long`` tensor per level, written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.files import atomic_write_bytes, torch_bytes

__all__ = ["load_indices", "save_indices"]


def save_indices(path: str | Path, indices: Sequence[Tensor]) -> None:
    """Write per-level channel indices atomically."""
    atomic_write_bytes(path, torch_bytes([torch.as_tensor(i).cpu() for i in indices]))


def load_indices(path: str | Path) -> list[Tensor]:
    """Per-level channel indices written by :func:`save_indices` (read with ``weights_only=True``)."""
    try:
        indices = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Cannot read AFS indices from {path}: {err}") from err
    if not isinstance(indices, list) or not all(isinstance(i, Tensor) for i in indices):
        raise ValueError(f"{path} does not hold a list of index tensors; got {type(indices).__name__}.")
    return indices

"""``AnomalyAwareFeatureSelection``: RealNet's AFS as a reusable Lightning callback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from tqdm.auto import tqdm
from typing_extensions import override

from anomalysynth.files import atomic_write_bytes, torch_bytes
from anomalysynth.models.realnet.afs import AFSAccumulator

__all__ = ["AnomalyAwareFeatureSelection", "load_indices", "save_indices", "train_loader"]


class AnomalyAwareFeatureSelection(Callback):
    """Choose feature channels by AFS before training starts.

    Runs in ``on_fit_start`` on up to ``num_batches`` training batches: the
    synthetic samples (label 1) give triplets (A = ``image``, I = ``source_image``,
    M = ``gt_mask``); per layer and channel the AFS error is accumulated and the
    ``dims[k]`` channels with the lowest error are handed to the module. Indices
    live in the module's state (so in checkpoints) and, with ``cache_path``, in a
    file that later runs reuse without recomputation.

    The module implements a small protocol: ``afs_features(images) -> list[Tensor]``
    (all channels per layer, raw images in [0, 1]), ``afs_dims``,
    ``set_feature_selection(indices)`` and ``feature_selection_done``.

    Args:
        num_batches: training batches to look at (RealNet: 64 batches of 16).
        dims: channels kept per layer (default: the module's ``afs_dims``).
        cache_path: a ``.pt`` file to read indices from / write them to.
    """

    def __init__(self, num_batches: int = 64, dims: Sequence[int] | None = None, cache_path: str | None = None) -> None:
        if num_batches < 1:
            raise ValueError(f"`AnomalyAwareFeatureSelection` needs `num_batches` >= 1; got {num_batches}.")
        if dims is not None and any(int(d) < 1 for d in dims):
            raise ValueError(f"`AnomalyAwareFeatureSelection` needs positive `dims`; got {list(dims)}.")
        self.num_batches = int(num_batches)
        self.dims = None if dims is None else [int(d) for d in dims]
        self.cache_path = None if cache_path is None else Path(cache_path)
        self.computed = False

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Compute (or load) the channel selection once."""
        for name in ("afs_features", "set_feature_selection", "afs_dims"):
            if not hasattr(pl_module, name):
                raise ValueError(
                    f"`AnomalyAwareFeatureSelection` needs a module with `{name}` (see its docstring); "
                    f"{type(pl_module).__name__} has none."
                )
        if getattr(pl_module, "feature_selection_done", False):
            return  # restored from a checkpoint
        if self.cache_path is not None and self.cache_path.is_file():
            pl_module.set_feature_selection(load_indices(self.cache_path))  # type: ignore[operator]
            return
        dims = self.dims or list(pl_module.afs_dims)  # type: ignore[arg-type]
        accumulator = AFSAccumulator()
        loader = train_loader(trainer)
        pl_module.eval()
        with torch.no_grad():
            for i, batch in enumerate(
                tqdm(loader, total=self.num_batches, desc="AFS", disable=not trainer.is_global_zero)
            ):
                if i >= self.num_batches:
                    break
                if getattr(batch, "source_image", None) is None:
                    raise ValueError(
                        "`AnomalyAwareFeatureSelection` needs batches with `source_image` (SyntheticAnomalyDataModule)."
                    )
                keep = torch.as_tensor(batch.gt_label).bool()
                if not keep.any():
                    continue
                device = pl_module.device
                anomalous = pl_module.afs_features(batch.image[keep].to(device))  # type: ignore[operator]
                normal = pl_module.afs_features(batch.source_image[keep].to(device))  # type: ignore[operator]
                accumulator.update(anomalous, normal, batch.gt_mask[keep].to(device))
        pl_module.train()
        for k, (errors, d) in enumerate(zip(accumulator.errors or [], dims, strict=False)):
            if d > errors.numel():
                raise ValueError(f"`dims[{k}]` = {d} is larger than layer {k} ({errors.numel()} channels).")
        indices = accumulator.select(dims)
        pl_module.set_feature_selection(indices)  # type: ignore[operator]
        self.computed = True
        if self.cache_path is not None and trainer.is_global_zero:
            save_indices(self.cache_path, indices)


def save_indices(path: str | Path, indices: Sequence[Tensor]) -> None:
    """Write per-layer channel indices atomically."""
    atomic_write_bytes(path, torch_bytes([torch.as_tensor(i).cpu() for i in indices]))


def load_indices(path: str | Path) -> list[Tensor]:
    try:
        indices = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Cannot read AFS indices from {path}: {err}") from err
    if not isinstance(indices, list) or not all(isinstance(i, Tensor) for i in indices):
        raise ValueError(f"{path} does not hold a list of index tensors.")
    return indices


def train_loader(trainer: pl.Trainer) -> Any:
    """A fresh training data loader of the trainer's fit (datamodule or dataloaders), for passes before training."""
    datamodule = getattr(trainer, "datamodule", None)
    return datamodule.train_dataloader() if datamodule is not None else trainer.fit_loop._data_source.dataloader()

"""``AnomalyAwareFeatureSelection``: RealNet's AFS as a reusable Lightning callback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from anomalysynth.selection import AFSPlan, RunsFeatureSelectionInWarmUp, check_selectable, train_loader

__all__ = ["AnomalyAwareFeatureSelection"]


class AnomalyAwareFeatureSelection(Callback):
    """Choose feature channels by AFS before training starts.

    On up to ``num_batches`` training batches, the synthetic samples (label 1) give
    triplets (A = ``image``, I = ``source_image``, M = ``gt_mask``); per layer and
    channel the AFS error is accumulated and the ``dims[k]`` channels with the lowest
    error are handed to the module. Indices live in the module's state (so in
    checkpoints) and, with ``cache_path``, in a file that later runs reuse without
    recomputation.

    The module implements :class:`~anomalysynth.selection.FeatureSelectable`:
    ``afs_features(images) -> list[Tensor]`` (all channels per layer, raw images in
    [0, 1]), ``afs_dims``, ``set_feature_selection(indices)`` and optionally
    ``feature_selection_done``. A module with its own warm-up
    (:class:`~anomalysynth.selection.RunsFeatureSelectionInWarmUp`, e.g. RealNet)
    receives the plan in ``setup`` and runs it as the first step of that warm-up;
    any other module is selected for in ``on_fit_start``.

    Args:
        num_batches: training batches to look at (RealNet: 64 batches of 16).
        dims: channels kept per layer (default: the module's ``afs_dims``).
        cache_path: a ``.pt`` file to read indices from / write them to.
    """

    def __init__(self, num_batches: int = 64, dims: Sequence[int] | None = None, cache_path: str | None = None) -> None:
        try:
            self.plan = AFSPlan(
                num_batches,
                dims=None if dims is None else tuple(int(d) for d in dims),
                cache_path=None if cache_path is None else Path(cache_path),
            )
        except ValueError as err:
            raise ValueError(f"`AnomalyAwareFeatureSelection`: {err}") from err
        self.computed = False
        self._handed_over = False

    @property
    def num_batches(self) -> int:
        return self.plan.num_batches

    @property
    def dims(self) -> list[int] | None:
        return None if self.plan.dims is None else list(self.plan.dims)

    @property
    def cache_path(self) -> Path | None:
        return self.plan.cache_path

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Hand the plan to a module that runs AFS in its own warm-up."""
        module: object = pl_module  # a LightningModule's __getattr__ hides the protocol from the type checker
        self._handed_over = False
        if stage == "fit" and isinstance(module, RunsFeatureSelectionInWarmUp):
            check_selectable(module)
            module.request_feature_selection(self.plan)
            self._handed_over = True

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Compute (or load) the channel selection once, unless the module's warm-up does."""
        if self._handed_over:
            return
        check_selectable(pl_module)
        self.computed = self.plan.apply(
            pl_module,  # type: ignore[arg-type]
            train_loader(trainer),
            pl_module.device,
            write_cache=trainer.is_global_zero,
            progress=trainer.is_global_zero,
        )

"""``AnomalyAwareFeatureSelection``: RealNet's AFS as a reusable Lightning callback."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from anomalysynth.callbacks.synthesize_on_device import SynthesizeOnDevice
from anomalysynth.selection import AFSPlan, RunsFeatureSelectionInWarmUp, check_selectable, train_loader
from anomalysynth.synth import Synthesizer

__all__ = ["AnomalyAwareFeatureSelection"]


class AnomalyAwareFeatureSelection(Callback):
    """Choose feature channels by AFS before training starts.

    AFS gathers ``num_samples`` anomalous triplets (A, I, M) from the training data,
    cycling the training loader as often as needed: the synthetic samples of
    :class:`~anomalysynth.datamodules.SyntheticAnomalyDataModule` batches (label 1:
    A = ``image``, I = ``source_image``, M = ``gt_mask``) and, with a synthesizer, an
    anomaly made on the module's device from every normal image drawn. The synthesizer
    is ``synthesizer`` when given, else the one of a
    :class:`~anomalysynth.callbacks.SynthesizeOnDevice` callback of the same Trainer,
    so AFS also works on a plain anomalib datamodule whose anomalies that callback
    makes during training. Pass ``p`` over the loader is keyed as epoch ``p``
    (``sample_generator(seed, key, p)``), so AFS is reproducible. Per layer and channel
    the AFS error is accumulated and the ``dims[k]`` channels with the lowest error are
    handed to the module. Indices live in the module's state (so in checkpoints) and,
    with ``cache_path``, in a file that later runs reuse without recomputation.

    The module implements :class:`~anomalysynth.selection.FeatureSelectable`:
    ``afs_features(images) -> list[Tensor]`` (all channels per layer, raw images in
    [0, 1]), ``afs_dims``, ``set_feature_selection(indices)`` and optionally
    ``feature_selection_done``. A module with its own warm-up
    (:class:`~anomalysynth.selection.RunsFeatureSelectionInWarmUp`, e.g. RealNet)
    receives the plan in ``setup`` and runs it as the first step of that warm-up;
    any other module is selected for in ``on_fit_start``.

    Args:
        num_samples: anomalous triplets to gather (RealNet: 1024).
        dims: channels kept per layer (default: the module's ``afs_dims``).
        cache_path: a ``.pt`` file to read indices from / write them to.
        num_batches: stop after this many training batches even with fewer triplets
            (quick runs); ``None``: no limit.
        synthesizer: makes anomalies from normal images (default: the
            ``SynthesizeOnDevice`` callback's, if the Trainer has one).
        seed: seed of those anomalies (default: the ``SynthesizeOnDevice`` callback's, else 0).
    """

    def __init__(
        self,
        num_samples: int = 1024,
        dims: Sequence[int] | None = None,
        cache_path: str | None = None,
        num_batches: int | None = None,
        synthesizer: Synthesizer | None = None,
        seed: int | None = None,
    ) -> None:
        try:
            self.plan = AFSPlan(
                num_samples=num_samples,
                dims=None if dims is None else tuple(int(d) for d in dims),
                cache_path=None if cache_path is None else Path(cache_path),
                num_batches=num_batches,
                synthesizer=synthesizer,
                seed=0 if seed is None else seed,
            )
        except ValueError as err:
            raise ValueError(f"`AnomalyAwareFeatureSelection`: {err}") from err
        self._seed_given = seed is not None
        self.computed = False
        self._handed_over = False

    @property
    def num_samples(self) -> int:
        return self.plan.num_samples

    @property
    def num_batches(self) -> int | None:
        return self.plan.num_batches

    @property
    def dims(self) -> list[int] | None:
        return None if self.plan.dims is None else list(self.plan.dims)

    @property
    def cache_path(self) -> Path | None:
        return self.plan.cache_path

    def plan_for(self, trainer: pl.Trainer) -> AFSPlan:
        """The plan with the synthesizer and seed of the Trainer's ``SynthesizeOnDevice`` filled in."""
        if self.plan.synthesizer is not None:
            return self.plan
        on_device = next((c for c in trainer.callbacks if isinstance(c, SynthesizeOnDevice)), None)  # type: ignore[attr-defined]
        if on_device is None:
            return self.plan
        seed = self.plan.seed if self._seed_given else on_device.seed
        return dataclasses.replace(self.plan, synthesizer=on_device.synthesizer, seed=seed)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Hand the plan to a module that runs AFS in its own warm-up."""
        module: object = pl_module  # a LightningModule's __getattr__ hides the protocol from the type checker
        self._handed_over = False
        if stage == "fit" and isinstance(module, RunsFeatureSelectionInWarmUp):
            check_selectable(module)
            module.request_feature_selection(self.plan_for(trainer))
            self._handed_over = True

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Compute (or load) the channel selection once, unless the module's warm-up does."""
        if self._handed_over:
            return
        check_selectable(pl_module)
        self.computed = self.plan_for(trainer).apply(
            pl_module,  # type: ignore[arg-type]
            train_loader(trainer),
            pl_module.device,
            write_cache=trainer.is_global_zero,
            progress=trainer.is_global_zero,
        )

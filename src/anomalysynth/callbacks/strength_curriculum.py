"""``StrengthCurriculum``: a synthesizer's strength scheduled over the training epochs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader
from typing_extensions import override

from anomalysynth.synth import Synthesizer
from anomalysynth.synth.schedule import StrengthSchedule, as_value, check_schedulable

__all__ = ["StrengthCurriculum"]


class StrengthCurriculum(Callback):
    """Move a synthesizer attribute from ``start`` to ``end`` over training, one value per epoch.

    For example opacity from strong to subtle (``attribute="blend.opacity"``,
    ``start=[0.9, 1.0]``, ``end=[0.3, 1.0]``) or SDAS's ``s`` sampled on the fly
    (``"source.sdas_strength"``); the value at an epoch is given by
    :class:`~anomalysynth.synth.schedule.StrengthSchedule` (``linear``, ``cosine``,
    ``step``). The value depends on the epoch only, so anomalies stay deterministic
    per ``(seed, epoch, key)``, and the drawn values are in the batch's
    ``synthesis_params`` (only attributes the synthesizer samples from are accepted).

    The synthesizers scheduled are ``synthesizer`` when given, else every one training
    uses: the datamodule's (:class:`~anomalysynth.datamodules.SyntheticAnomalyDataModule`,
    on the fly; a cached bank is fixed and refused), the training loader's
    ``SyntheticAnomalyDataset``, and those of callbacks that carry one
    (``SynthesizeOnDevice``, anomalib's ``UseSynthesizer``). The value is set in
    ``on_train_epoch_start`` in the main process; a ``SyntheticAnomalyDataset`` also
    evaluates the schedule itself from the epoch its ``EpochSampler`` hands each item, which
    is how the value reaches persistent DataLoader workers (the datamodule uses that
    sampler whenever a schedule is installed). A loader with persistent workers and
    another sampler is refused. The value is logged as ``strength/<attribute>``
    (``.../low`` and ``.../high`` for a range).

    Args:
        attribute: dotted path from the synthesizer (``blend.opacity``,
            ``synthesizers.0.blend.opacity`` inside a ``OneOf``); an unknown one raises
            and lists the numeric attributes it has.
        start: the value of epoch 0: a number or a ``[low, high]`` range.
        end: the value of the last epoch (``epochs - 1``) and after.
        schedule: ``"linear"``, ``"cosine"`` or ``"step"``.
        epochs: length of the schedule (default: the Trainer's ``max_epochs``).
        steps: ``step`` schedule: number of levels over ``epochs`` (2: halfway switch).
        milestones: ``step`` schedule: the epochs at which the value steps (instead of ``steps``).
        synthesizer: the synthesizer to schedule (e.g. one inside an anomalib model
            given to ``use_synthesizer``); ``None`` finds them as above.
        log: log the value every epoch.
    """

    def __init__(
        self,
        attribute: str,
        start: float | tuple[float, float],
        end: float | tuple[float, float],
        schedule: str = "linear",
        epochs: int | None = None,
        steps: int = 2,
        milestones: list[int] | None = None,
        synthesizer: Synthesizer | None = None,
        log: bool = True,
    ) -> None:
        if synthesizer is not None and not isinstance(synthesizer, Synthesizer):
            raise ValueError(
                f"`synthesizer` must be an anomalysynth Synthesizer or None; got {type(synthesizer).__name__}."
            )
        self.attribute, self.start, self.end = attribute, as_value("start", start), as_value("end", end)
        self.schedule, self.epochs, self.steps = schedule, epochs, steps
        self.milestones = None if milestones is None else tuple(milestones)
        self.synthesizer = synthesizer
        self.log = bool(log)
        # validates every argument now (epochs is known at setup)
        self.plan: StrengthSchedule = self._plan(epochs if epochs is not None else 1)
        self.targets: list[Synthesizer] = []

    def _plan(self, epochs: int) -> StrengthSchedule:
        return StrengthSchedule(
            self.attribute, self.start, self.end, epochs, self.schedule, self.steps, self.milestones
        )

    def value(self, epoch: int) -> float | tuple[float, float]:
        """The scheduled value at ``epoch``."""
        return self.plan.value(epoch)

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Find the synthesizers, check the attribute, install the schedule in their datasets."""
        if stage != "fit":
            return
        epochs = self.epochs
        if epochs is None:
            epochs = trainer.max_epochs
            if epochs is None or epochs < 1:
                raise ValueError("`StrengthCurriculum` needs `epochs` when the Trainer has no `max_epochs`.")
        self.plan = self._plan(int(epochs))
        self.targets = []
        # now when the datamodule has them (its loader then samples with the epoch); a plain loader's later
        self._discover(trainer, required=self.synthesizer is not None)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Find the synthesizers of a plain training loader (known once the loop has built it)."""
        if not self.targets:
            self._discover(trainer, required=True)

    def _discover(self, trainer: pl.Trainer, required: bool) -> None:
        targets = self._synthesizers(trainer, required)
        for synthesizer in targets:
            check_schedulable(synthesizer, self.plan)
        self.targets = targets
        self._install(trainer)
        for synthesizer in self.targets:  # anything before the first epoch (a warm-up) sees the scheduled value
            self.plan.apply(synthesizer, trainer.current_epoch)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Set this epoch's value and log it."""
        epoch = trainer.current_epoch
        self._install(trainer)
        value: Any = None
        for synthesizer in self.targets:
            value = self.plan.apply(synthesizer, epoch)
        if self.log and value is not None:
            name = f"strength/{self.attribute}"
            values = {f"{name}/low": value[0], f"{name}/high": value[1]} if isinstance(value, tuple) else {name: value}
            for key, v in values.items():
                pl_module.log(key, float(v), on_step=False, on_epoch=True, batch_size=1)

    # ------------------------------------------------------------------ discovery
    def _synthesizers(self, trainer: pl.Trainer, required: bool = True) -> list[Synthesizer]:
        if self.synthesizer is not None:
            return [self.synthesizer]
        found: list[Synthesizer] = []
        datamodule = getattr(trainer, "datamodule", None)
        if getattr(datamodule, "mode", None) == "cached":
            raise ValueError(
                "`StrengthCurriculum` cannot schedule a cached bank (its anomalies are fixed on disk): use "
                "SyntheticAnomalyDataModule(mode='on_the_fly')."
            )
        candidates = [getattr(d, "synthesizer", None) for d in self._datasets(trainer)]
        candidates += [getattr(c, "synthesizer", None) for c in trainer.callbacks if c is not self]  # type: ignore[attr-defined]
        for candidate in candidates:
            if isinstance(candidate, Synthesizer) and not any(candidate is f for f in found):
                found.append(candidate)
        if not found and required:
            raise ValueError(
                "`StrengthCurriculum` found no synthesizer: train on a SyntheticAnomalyDataModule or "
                "SyntheticAnomalyDataset, use SynthesizeOnDevice/UseSynthesizer, or pass `synthesizer`."
            )
        return found

    def _datasets(self, trainer: pl.Trainer) -> Iterator[Any]:
        """Training datasets that evaluate schedules (``add_schedule``): the datamodule's, the loaders'."""
        datamodule = getattr(trainer, "datamodule", None)
        for name in ("train_data", "synthetic_source"):
            dataset = getattr(datamodule, name, None)
            if callable(getattr(dataset, "add_schedule", None)):
                yield dataset
        for loader in self._loaders(trainer):
            if callable(getattr(loader.dataset, "add_schedule", None)):
                yield loader.dataset

    @staticmethod
    def _loaders(trainer: pl.Trainer) -> list[DataLoader]:
        try:
            loaders: Any = trainer.train_dataloader
        except Exception:  # not built yet
            return []
        if isinstance(loaders, DataLoader):
            return [loaders]
        if isinstance(loaders, dict):
            loaders = list(loaders.values())
        return [x for x in (loaders or []) if isinstance(x, DataLoader)] if isinstance(loaders, list | tuple) else []

    def _install(self, trainer: pl.Trainer) -> None:
        for dataset in self._datasets(trainer):
            if any(dataset.synthesizer is s for s in self.targets):
                dataset.add_schedule(self.plan)
        for loader in self._loaders(trainer):
            reaches_workers = getattr(loader.sampler, "yields_epoch", False)
            uses_target = any(getattr(loader.dataset, "synthesizer", None) is s for s in self.targets)
            if uses_target and loader.num_workers > 0 and loader.persistent_workers and not reaches_workers:
                raise ValueError(
                    "`StrengthCurriculum`: the training loader keeps persistent workers, which a value set in the "
                    "main process does not reach; sample with anomalysynth's EpochSampler (as "
                    "SyntheticAnomalyDataModule does) or set persistent_workers=False."
                )

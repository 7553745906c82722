"""``SyntheticAnomalyDataModule``: any anomalib datamodule, with synthetic anomalies in training."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import torch
from anomalib.data import AnomalibDataModule
from torch.utils.data import DataLoader, Subset
from typing_extensions import override

from anomalysynth.datamodules.cache import (
    DEFAULT_BATCH_SIZE,
    CachedSyntheticDataset,
    SynthesisCache,
    build_in_strategy,
)
from anomalysynth.datamodules.synthetic import (
    EpochSampler,
    SyntheticAnomalyDataset,
    SyntheticImageBatch,
    check_repeats,
)
from anomalysynth.files import home_dir
from anomalysynth.synth import DefaultMix, Synthesizer
from anomalysynth.synth.base import check_ratio
from anomalysynth.synth.keyed import resolve_anomaly_ratio

__all__ = ["SyntheticAnomalyDataModule", "default_cache_dir"]


def default_cache_dir() -> Path:
    """``$ANOMALYSYNTH_HOME/banks`` (default ``~/.cache/anomalysynth/banks``)."""
    return home_dir() / "banks"


def training_folder(dataset: Any) -> str | None:
    """The folder holding every training image of an anomalib dataset (``None`` when unknown).

    The deepest common folder of its samples' ``image_path``: ``train/good`` for an
    MVTec-style category.
    """
    samples = getattr(dataset, "samples", None)
    if samples is None or "image_path" not in getattr(samples, "columns", ()) or len(samples) == 0:
        return None
    folder = Path(os.path.commonpath([str(Path(p).parent) for p in samples["image_path"]]))
    return str(folder) if folder.is_dir() else None


class SyntheticAnomalyDataModule(AnomalibDataModule):
    """Wrap an anomalib datamodule and replace only its training split.

    Training items carry synthetic anomalies (``gt_mask``, ``gt_label``) and the
    clean ``source_image``; validation and test stay exactly as the wrapped module
    made them. Works with anomalib's ``Engine``, ``anomalib fit --data``, and a
    plain Lightning ``Trainer``.

    Args:
        datamodule: the wrapped anomalib datamodule (``Folder``, ``MVTecAD``, the demo, ...).
        synthesizer: the anomaly synthesizer; ``None`` (default) is the shipped mix,
            :class:`~anomalysynth.synth.DefaultMix` over the folder of the training
            images (their content is one of its sources).
        anomaly_ratio: probability that a training item is made anomalous: the one coin
            (``None`` takes the synthesizer's own ratio; a synthesizer built with a
            ratio other than 1 next to a different number here is refused).
        mode: ``"on_the_fly"`` (synthesized in the DataLoader workers) or ``"cached"``
            (read from a bank on disk, built on first use; see :class:`SynthesisCache`).
            Under a Trainer the bank is built on the trainer's device; under DDP every
            rank builds its own share of the entries, then all ranks wait at a barrier.
        cache_dir: folder of banks for ``"cached"`` (default ``~/.cache/anomalysynth/banks``).
        seed: base seed of the anomalies.
        reseed_every_epoch: fresh anomalies every epoch, deterministic per
            ``(seed, epoch, key)``; ``None`` (default) means yes for ``"on_the_fly"``
            and no for ``"cached"`` (a bank is one fixed set). ``False`` trains on one
            fixed set of anomalies.
        train_batch_size: overrides the wrapped module's training batch size.
        num_workers: overrides the wrapped module's number of workers.
        num_shots: few-shot training: keep only this many normal training images,
            chosen with ``seed`` (the same ``k`` images for the same seed), and make
            the synthetic anomalies from them.
        repeats: each training image appears this many times per epoch, each time
            with a different anomaly (few-shot: many anomalies from ``num_shots`` images).
        cache_batch_size: entries synthesized together on the device while building a bank.
    """

    def __init__(
        self,
        datamodule: AnomalibDataModule,
        synthesizer: Synthesizer | None = None,
        anomaly_ratio: float | None = 0.5,
        mode: Literal["on_the_fly", "cached"] = "on_the_fly",
        cache_dir: str | Path | None = None,
        seed: int = 0,
        reseed_every_epoch: bool | None = None,
        train_batch_size: int | None = None,
        num_workers: int | None = None,
        num_shots: int | None = None,
        repeats: int = 1,
        cache_batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if not isinstance(datamodule, AnomalibDataModule):
            raise ValueError(
                f"`SyntheticAnomalyDataModule` wraps an anomalib AnomalibDataModule; got {type(datamodule).__name__}."
            )
        if synthesizer is not None and not isinstance(synthesizer, Synthesizer):
            raise ValueError(
                f"`synthesizer` must be an anomalysynth Synthesizer (or None for the shipped mix); "
                f"got {type(synthesizer).__name__}."
            )
        if mode not in ("on_the_fly", "cached"):
            raise ValueError(f"`mode` must be 'on_the_fly' or 'cached'; got {mode!r}.")
        if isinstance(cache_batch_size, bool) or not isinstance(cache_batch_size, int) or cache_batch_size < 1:
            raise ValueError(f"`cache_batch_size` must be an integer >= 1; got {cache_batch_size!r}.")
        if num_shots is not None and num_shots < 1:
            raise ValueError(f"`num_shots` must be >= 1; got {num_shots}.")
        if reseed_every_epoch is None:
            reseed_every_epoch = mode == "on_the_fly"
        if mode == "cached" and reseed_every_epoch:
            raise ValueError("`reseed_every_epoch` needs mode='on_the_fly': a cached bank is fixed.")
        super().__init__(
            train_batch_size=train_batch_size or datamodule.train_batch_size,
            eval_batch_size=datamodule.eval_batch_size,
            num_workers=datamodule.num_workers if num_workers is None else num_workers,
            seed=datamodule.seed,
        )
        self.datamodule = datamodule
        # None: the shipped mix (DefaultMix) over the training images' folder, made in setup
        self.synthesizer: Synthesizer | None = synthesizer
        # the shipped mix is made in setup (it needs the training folder); its own ratio is 1.0
        self.anomaly_ratio = (
            (1.0 if anomaly_ratio is None else check_ratio(anomaly_ratio))
            if synthesizer is None
            else resolve_anomaly_ratio(synthesizer, anomaly_ratio, "SyntheticAnomalyDataModule")
        )
        self.mode = mode
        self.cache = SynthesisCache(cache_dir if cache_dir is not None else default_cache_dir())
        self.synthesis_seed = int(seed)
        self.reseed_every_epoch = bool(reseed_every_epoch)
        self.num_shots = num_shots
        self.repeats = check_repeats(repeats)
        self.cache_batch_size = cache_batch_size

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.datamodule.name

    @property  # type: ignore[override]
    def category(self) -> str:
        return self.datamodule.category

    @category.setter
    def category(self, category: str) -> None:
        self.datamodule.category = category

    @override
    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    @override
    def setup(self, stage: str | None = None) -> None:
        self.datamodule.setup(stage)
        for split in ("val_data", "test_data"):
            if hasattr(self.datamodule, split):
                setattr(self, split, getattr(self.datamodule, split))
        if hasattr(self.datamodule, "train_data"):
            self.synthetic_source = self.synthetic_training_source()
            self.train_data = self.synthetic_source  # type: ignore[assignment]
            if self.mode == "cached":
                self.train_data = self._cached(self.synthetic_source)  # type: ignore[assignment]
        self._is_setup = True

    def synthetic_training_source(self) -> SyntheticAnomalyDataset:
        """The on-the-fly training set (after the wrapped module's setup): what a bank caches."""
        normal: Any = self.datamodule.train_data
        if self.synthesizer is None:
            self.synthesizer = DefaultMix(normal_dir=training_folder(normal))
        if self.num_shots is not None:
            normal = self._shots(normal)
        return SyntheticAnomalyDataset(
            normal,
            self.synthesizer,
            anomaly_ratio=self.anomaly_ratio,
            seed=self.synthesis_seed,
            reseed_every_epoch=self.reseed_every_epoch,
            repeats=self.repeats,
        )

    def _shots(self, dataset: Any) -> Subset:
        if self.num_shots is not None and self.num_shots > len(dataset):
            raise ValueError(f"`num_shots` = {self.num_shots} but the training split has {len(dataset)} images.")
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.synthesis_seed))
        return Subset(dataset, sorted(order[: self.num_shots].tolist()))

    def _cached(self, source: SyntheticAnomalyDataset) -> CachedSyntheticDataset:
        trainer = getattr(self, "trainer", None)
        workers = self.num_workers
        if trainer is not None:  # every rank (one under a single device) builds its share on its device
            key = build_in_strategy(self.cache, source, trainer, batch_size=self.cache_batch_size, num_workers=workers)
        else:
            key = self.cache.key(source)
            if not self.cache.is_complete(self.cache.bank_dir(source, key)):
                self.cache.build(source, key=key, batch_size=self.cache_batch_size, num_workers=workers)
        return self.cache.dataset(source, key=key)

    @override
    def train_dataloader(self) -> DataLoader:
        workers = self.num_workers
        common: dict[str, Any] = {
            "batch_size": self.train_batch_size,
            "num_workers": workers,
            "collate_fn": SyntheticImageBatch.collate,
            "persistent_workers": workers > 0,
        }
        # a strength schedule (StrengthCurriculum) is evaluated in the workers from the sampler's epoch
        if self.reseed_every_epoch or getattr(self.train_data, "schedules", None):
            sampler = EpochSampler(len(self.train_data), shuffle=True, seed=self.synthesis_seed)
            return DataLoader(self.train_data, sampler=sampler, **common)
        return DataLoader(self.train_data, shuffle=True, **common)

    @override
    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    @override
    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()

    @override
    def predict_dataloader(self) -> Any:
        return self.datamodule.predict_dataloader()

    @override
    def _setup(self, _stage: str | None = None) -> None:  # pragma: no cover - setup() is overridden
        self.datamodule.setup(_stage)

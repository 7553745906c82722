"""``SyntheticAnomalyDataset``: any image dataset, with synthetic anomalies.

Items are anomalib ``ImageItem``s whose ``image``, ``gt_mask`` and ``gt_label``
carry the synthetic anomaly, plus ``source_image`` (the clean image: RealNet's
reconstruction target) and ``anomaly_strength``.

Seeding: the anomaly of an item depends only on ``(seed, epoch, key)``, where the
key is the item's ``image_path`` when it has one, else its index. So item ``i``
is the same whatever the epoch order, batch size or number of workers, and the
``SynthesizeOnDevice`` callback, which keys samples the same way, makes the same
anomalies on the accelerator.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from anomalib.data import ImageBatch, ImageItem
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchvision.tv_tensors import Image, Mask

from anomalysynth.seeding import sample_generator
from anomalysynth.synth import Synthesizer
from anomalysynth.synth.keyed import resolve_anomaly_ratio, synthesize_keyed

__all__ = [
    "EpochSampler",
    "SyntheticAnomalyDataset",
    "SyntheticImageBatch",
    "SyntheticImageItem",
    "sample_generator",
    "synthesize_keyed",
]
# ``sample_generator`` and ``synthesize_keyed`` live in ``anomalysynth.seeding`` and
# ``anomalysynth.synth.keyed``; they are re-exported here for existing imports.


@dataclass
class SyntheticImageItem(ImageItem):
    """An ``ImageItem`` with the clean source image and the anomaly strength."""

    source_image: Tensor | None = None
    anomaly_strength: Tensor | None = None
    synthesis_params: dict[str, Tensor] | None = None


@dataclass
class SyntheticImageBatch(ImageBatch):
    """An ``ImageBatch`` with ``source_image`` (B, C, H, W), ``anomaly_strength`` (B,) and
    ``synthesis_params`` (batch-first; ``synthesizer.apply(batch.source_image, batch.synthesis_params)``
    replays the batch's anomalies)."""

    item_class = SyntheticImageItem
    source_image: Tensor | None = None
    anomaly_strength: Tensor | None = None
    synthesis_params: dict[str, Tensor] | None = None

    @property
    def items(self) -> list[SyntheticImageItem]:  # type: ignore[override]
        """The batch's items, each with its own slice of ``synthesis_params``."""
        params = self.synthesis_params
        self.synthesis_params = None  # anomalib's split indexes every field; a dict is sliced here
        try:
            items: list[SyntheticImageItem] = list(super().items)  # type: ignore[arg-type]
        finally:
            self.synthesis_params = params
        if params is not None:
            for i, item in enumerate(items):
                item.synthesis_params = {k: v[i] for k, v in params.items()}
        return items


class SyntheticAnomalyDataset(Dataset):
    """Wrap a dataset of normal images and return items with synthetic anomalies.

    Args:
        dataset: an anomalib image dataset (items with ``image``) or any dataset of
            (C, H, W) float tensors in [0, 1] (or tuples whose first entry is one).
        synthesizer: the anomaly synthesizer.
        anomaly_ratio: probability that an item is made anomalous; the others stay
            normal. The one coin: ``None`` takes the synthesizer's own ratio, and a
            synthesizer built with a ratio other than 1 next to a different number here
            is refused.
        seed: base seed of every item's generator.
        reseed_every_epoch: fresh anomalies each epoch (the default, as DRAEM and
            RealNet train), deterministic per ``(seed, epoch, key)``: use
            :class:`EpochSampler` or call :meth:`set_epoch`. ``False`` keeps one fixed
            set: item ``i`` is the same every epoch.
        repeats: each source image appears this many times per epoch, each time with
            its own anomaly (repeat ``r > 0`` is keyed ``"<key>#r"``); for few-shot
            training, where a handful of images must yield many anomalies.
    """

    def __init__(
        self,
        dataset: Dataset,
        synthesizer: Synthesizer,
        anomaly_ratio: float | None = 0.5,
        seed: int = 0,
        reseed_every_epoch: bool = True,
        repeats: int = 1,
    ) -> None:
        if not isinstance(synthesizer, Synthesizer):
            raise ValueError(f"`synthesizer` must be an anomalysynth Synthesizer; got {type(synthesizer).__name__}.")
        self.dataset = dataset
        self.synthesizer = synthesizer
        self.anomaly_ratio = resolve_anomaly_ratio(synthesizer, anomaly_ratio, "SyntheticAnomalyDataset")
        self.seed = int(seed)
        self.reseed_every_epoch = bool(reseed_every_epoch)
        self.repeats = check_repeats(repeats)
        self.epoch = 0
        self.schedules: list[Any] = []
        self._scheduled_epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for reseeding when ``reseed_every_epoch`` (in this process only)."""
        self.epoch = int(epoch)

    def add_schedule(self, schedule: Any) -> None:
        """Evaluate ``schedule`` on this dataset's synthesizer from the epoch of every item.

        ``schedule`` has ``apply(synthesizer, epoch)`` (a
        :class:`~anomalysynth.synth.schedule.StrengthSchedule`). It runs where the item is
        made, from the epoch the :class:`EpochSampler` hands over (whatever
        ``reseed_every_epoch``), so it reaches DataLoader workers, persistent ones too.
        Items indexed without an epoch use the synthesizer as the main process left it. A
        schedule of the same ``attribute`` as an installed one replaces it.
        """
        attribute = getattr(schedule, "attribute", None)  # a new schedule of the same attribute replaces the old
        self.schedules = [s for s in self.schedules if attribute is None or getattr(s, "attribute", None) != attribute]
        self.schedules.append(schedule)
        self._scheduled_epoch = None

    def _apply_schedules(self, epoch: int) -> None:
        schedules = getattr(self, "schedules", None)
        if schedules and epoch != getattr(self, "_scheduled_epoch", None):
            for schedule in schedules:
                schedule.apply(self.synthesizer, epoch)
            self._scheduled_epoch = epoch

    @property
    def collate_fn(self) -> Any:
        """Collates items into a :class:`SyntheticImageBatch`."""
        return SyntheticImageBatch.collate

    def source(self, index: int) -> tuple[Tensor, str | int, ImageItem | None]:
        """The clean (C, H, W) image of item ``index``, its key, and the wrapped item if it is an ImageItem."""
        if not 0 <= index < len(self):
            raise IndexError(f"Item {index} out of range for {len(self)} items.")
        repeat, index = divmod(index, len(self.dataset))  # type: ignore[arg-type]
        image, key, item = self._source(index)
        return image, (key if repeat == 0 else f"{key}#{repeat}"), item

    def _source(self, index: int) -> tuple[Tensor, str | int, ImageItem | None]:
        item = self.dataset[index]
        if isinstance(item, ImageItem):
            image, key = item.image, item.image_path or index
        elif isinstance(item, Tensor):
            image, key, item = item, index, None
        elif isinstance(item, tuple | list) and item and isinstance(item[0], Tensor):
            image, key, item = item[0], index, None
        else:
            raise ValueError(
                f"Item {index} of {type(self.dataset).__name__} is {type(item).__name__}; expected an anomalib "
                "ImageItem, a (C, H, W) tensor or a tuple starting with one."
            )
        if image is None or image.ndim != 3:
            raise ValueError(f"Item {index}: expected a (C, H, W) image; got {None if image is None else image.shape}.")
        return image.as_subclass(Tensor), key, item

    def __getitem__(self, index: int | tuple[int, int]) -> SyntheticImageItem:
        epoch = self.epoch if self.reseed_every_epoch else 0
        if isinstance(index, tuple):  # (epoch, index) from EpochSampler
            sampled_epoch, index = int(index[0]), index[1]
            self._apply_schedules(sampled_epoch)
            epoch = sampled_epoch if self.reseed_every_epoch else 0
        image, key, item = self.source(index)
        out = synthesize_keyed(self.synthesizer, image.unsqueeze(0), [key], self.seed, self.anomaly_ratio, epoch)
        return SyntheticImageItem(
            image=Image(out.image[0]),
            gt_label=out.label[0],
            gt_mask=Mask(out.mask[0, 0] > 0),
            image_path=getattr(item, "image_path", None) or str(key),
            mask_path=None,
            source_image=image,
            anomaly_strength=out.strength[0],
            synthesis_params={k: v[0] for k, v in out.params.items()},
        )


def check_repeats(repeats: object) -> int:
    """``repeats`` as an int, or ValueError unless it is an integer >= 1."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"`repeats` must be an integer >= 1; got {repeats!r}.")
    return repeats


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` so workers see the epoch; Lightning calls :meth:`set_epoch`.

    Args:
        length: dataset length.
        shuffle: shuffle with a generator seeded by ``(seed, epoch)``.
        seed: shuffling seed.
    """

    yields_epoch = True  # what a strength schedule checks before relying on persistent workers

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0) -> None:
        self.length, self.shuffle, self.seed, self.epoch = length, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.length, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.length)
        return iter((self.epoch, int(i)) for i in order)

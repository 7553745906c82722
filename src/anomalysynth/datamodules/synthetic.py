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

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from anomalib.data import ImageBatch, ImageItem
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchvision.tv_tensors import Image, Mask

from anomalysynth.synth import Synthesizer, SynthOutput

__all__ = [
    "EpochSampler",
    "SyntheticAnomalyDataset",
    "SyntheticImageBatch",
    "SyntheticImageItem",
    "sample_generator",
    "synthesize_keyed",
]


@dataclass
class SyntheticImageItem(ImageItem):
    """An ``ImageItem`` with the clean source image and the anomaly strength."""

    source_image: Tensor | None = None
    anomaly_strength: Tensor | None = None


@dataclass
class SyntheticImageBatch(ImageBatch):
    """An ``ImageBatch`` with ``source_image`` (B, C, H, W) and ``anomaly_strength`` (B,)."""

    item_class = SyntheticImageItem
    source_image: Tensor | None = None
    anomaly_strength: Tensor | None = None


def sample_generator(seed: int, key: str | int, epoch: int = 0) -> torch.Generator:
    """The generator of one sample: a function of (seed, epoch, key) only."""
    digest = hashlib.blake2b(f"{seed}|{epoch}|{key}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def synthesize_keyed(
    synthesizer: Synthesizer,
    images: Tensor,
    keys: Sequence[str | int],
    seed: int,
    anomaly_ratio: float,
    epoch: int = 0,
) -> SynthOutput:
    """Synthesize a batch where sample ``i`` is decided and drawn from ``sample_generator(seed, keys[i], epoch)``.

    A sample is made anomalous with probability ``anomaly_ratio`` (first draw of its
    generator); the others are returned unchanged with an empty mask and label 0.
    """
    b, _, h, w = images.shape
    gens = [sample_generator(seed, key, epoch) for key in keys]
    anomalous = [bool(torch.rand((), generator=g) < anomaly_ratio) for g in gens]
    image, mask = images.clone(), images.new_zeros(b, 1, h, w)
    label = torch.zeros(b, dtype=torch.long, device=images.device)
    strength = images.new_zeros(b)
    idx = [i for i, a in enumerate(anomalous) if a]
    if idx:
        out = synthesizer(images[idx], generator=[gens[i] for i in idx])
        index = torch.tensor(idx, device=images.device)
        image[index], mask[index], label[index], strength[index] = out.image, out.mask, out.label, out.strength
    return SynthOutput(image=image, mask=mask, label=label, strength=strength, params={})


class SyntheticAnomalyDataset(Dataset):
    """Wrap a dataset of normal images and return items with synthetic anomalies.

    Args:
        dataset: an anomalib image dataset (items with ``image``) or any dataset of
            (C, H, W) float tensors in [0, 1] (or tuples whose first entry is one).
        synthesizer: the anomaly synthesizer.
        anomaly_ratio: fraction of items made anomalous; the others stay normal.
        seed: base seed of every item's generator.
        reseed_every_epoch: draw fresh anomalies each epoch (use :class:`EpochSampler`
            or call :meth:`set_epoch`); otherwise item ``i`` is the same every epoch.
        repeats: each source image appears this many times per epoch, each time with
            its own anomaly (repeat ``r > 0`` is keyed ``"<key>#r"``); for few-shot
            training, where a handful of images must yield many anomalies.
    """

    def __init__(
        self,
        dataset: Dataset,
        synthesizer: Synthesizer,
        anomaly_ratio: float = 0.5,
        seed: int = 0,
        reseed_every_epoch: bool = False,
        repeats: int = 1,
    ) -> None:
        if not isinstance(synthesizer, Synthesizer):
            raise ValueError(f"`synthesizer` must be an anomalysynth Synthesizer; got {type(synthesizer).__name__}.")
        if not 0.0 <= anomaly_ratio <= 1.0:
            raise ValueError(f"`anomaly_ratio` must lie in [0, 1]; got {anomaly_ratio}.")
        self.dataset = dataset
        self.synthesizer = synthesizer
        self.anomaly_ratio = float(anomaly_ratio)
        self.seed = int(seed)
        self.reseed_every_epoch = bool(reseed_every_epoch)
        self.repeats = check_repeats(repeats)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for reseeding when ``reseed_every_epoch`` (in this process only)."""
        self.epoch = int(epoch)

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
            epoch, index = (index[0] if self.reseed_every_epoch else 0), index[1]
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

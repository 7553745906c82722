"""The synthesis cache: a bank of synthetic samples on disk.

A bank lives in ``<root>/<key>/`` where ``key`` hashes the package version, the
synthesizer's config, the content of every texture folder it reads, the source
images' content, the seed and the anomaly ratio, so a changed setting, a changed
texture folder or a new release never reuses stale entries. Entry ``i`` is
``entries/<i>.pt`` (image, mask, label, strength, clean source image, source index
and key) with its SHA-256 in ``entries/<i>.sha256``. Both are written to a temporary
file, flushed, renamed into place and the folder synced, the checksum last, so an
entry exists only when it is complete: a build killed at any point resumes where it
stopped. ``manifest.json`` (also written atomically) records the config and every
checksum once the bank is complete. Reading verifies the checksum and names the file
when it does not match.

Entries are made by :class:`SynthesisPredictor`, a LightningModule that owns the
synthesizer as a submodule (Lightning moves it to the accelerator) and synthesizes
whole blocks of ``batch_size`` entries per step on the device; the DataLoader only
reads source images. Block ``b`` belongs to rank ``b % world_size``
(:mod:`anomalysynth.sharding`), so no rank repeats another's entries, each rank
writes its own, and the bank is identical file for file whatever the number of
processes. Every sample is drawn from its own ``(seed, epoch 0, key)`` generator, as
on the fly. Three ways in: :func:`build_with_trainer` (``anomalysynth cache``,
``Trainer.predict`` with any strategy: DDP over devices and nodes),
:meth:`SynthesisCache.build` (one process, on a given device) and
:func:`build_in_strategy` (every rank of a running DDP job builds its share, then a
barrier; what ``SyntheticAnomalyDataModule(mode="cached")`` does).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.tv_tensors import Image, Mask

import anomalysynth
from anomalysynth.datamodules.synthetic import SyntheticAnomalyDataset, SyntheticImageBatch, SyntheticImageItem
from anomalysynth.files import atomic_write_bytes, torch_bytes
from anomalysynth.sharding import BlockPredictor, module_device, predict_blocks
from anomalysynth.synth import Synthesizer
from anomalysynth.synth.fingerprint import folder_fingerprints
from anomalysynth.synth.keyed import synthesize_keyed

__all__ = [
    "CacheCorruptError",
    "CachedSyntheticDataset",
    "SynthesisCache",
    "SynthesisPredictor",
    "build_in_strategy",
    "build_with_trainer",
]

DEFAULT_BATCH_SIZE = 8

_FORMAT = 1


class CacheCorruptError(ValueError):
    """An entry of the synthesis cache is missing, truncated or altered."""


class SynthesisCache:
    """A folder of synthesis banks.

    Args:
        root: folder holding one sub-folder per bank key.

    Example:
        >>> cache = SynthesisCache("~/.cache/anomalysynth/banks")           # doctest: +SKIP
        >>> bank = cache.build(wrapped)  # wrapped: a SyntheticAnomalyDataset  # doctest: +SKIP
        >>> dataset = cache.dataset(wrapped)                                 # doctest: +SKIP
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    # ------------------------------------------------------------------ keys
    @staticmethod
    def key(source: SyntheticAnomalyDataset) -> str:
        """Hash of the package version, the synthesizer config, the content of its texture folders,
        the source images' content, the seed and the anomaly ratio."""
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                {
                    "format": _FORMAT,
                    "version": anomalysynth.__version__,
                    "synthesizer": source.synthesizer.config(),
                    "texture_folders": folder_fingerprints(source.synthesizer),
                    "seed": source.seed,
                    "anomaly_ratio": source.anomaly_ratio,
                },
                sort_keys=True,
            ).encode()
        )
        for index in range(len(source)):
            image, key, _ = source.source(index)
            digest.update(str(key).encode())
            digest.update(image.detach().float().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:24]

    def bank_dir(self, source: SyntheticAnomalyDataset, key: str | None = None) -> Path:
        return self.root / (key or self.key(source))

    # ------------------------------------------------------------------ writing
    def missing(self, bank: Path, count: int) -> list[int]:
        """Indices whose entry is absent or incomplete."""
        return [i for i in range(count) if not _is_written(bank, i)]

    def build(
        self,
        source: SyntheticAnomalyDataset,
        progress: bool = True,
        key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        device: torch.device | str | None = None,
        num_workers: int = 0,
    ) -> Path:
        """Build (or finish) the bank of ``source`` in this process; returns its folder.

        Args:
            source: the on-the-fly dataset the bank caches (its epoch-0 items).
            progress: show a progress bar.
            key: the bank key if already computed (:meth:`key`).
            batch_size: entries synthesized together (one block).
            device: where to synthesize (default: where the synthesizer is); the
                synthesizer is moved there for the build and back afterwards.
            num_workers: DataLoader workers reading the source images.
        """
        bank = self.bank_dir(source, key)
        predictor = SynthesisPredictor(source, bank, batch_size=batch_size, num_workers=num_workers)
        predictor.run(device=device, progress=progress, desc=f"synthesis cache {bank.name}")
        if not self.is_complete(bank):
            self.finalize(bank, source)
        return bank

    def finalize(self, bank: Path, source: SyntheticAnomalyDataset) -> None:
        """Write ``manifest.json`` once every entry is present."""
        count = len(source)
        if self.missing(bank, count):
            raise RuntimeError(f"Cannot finalize {bank}: {len(self.missing(bank, count))} entries are missing.")
        manifest = {
            "format": _FORMAT,
            "version": anomalysynth.__version__,
            "key": bank.name,
            "count": count,
            "seed": source.seed,
            "anomaly_ratio": source.anomaly_ratio,
            "synthesizer": source.synthesizer.config(),
            "checksums": {str(i): _checksum_path(bank, i).read_text().strip() for i in range(count)},
        }
        atomic_write_bytes(bank / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())

    # ------------------------------------------------------------------ reading
    def is_complete(self, bank: Path) -> bool:
        return (bank / "manifest.json").is_file()

    def dataset(self, source: SyntheticAnomalyDataset, key: str | None = None) -> CachedSyntheticDataset:
        """The bank of ``source`` as a dataset (it must be built)."""
        bank = self.bank_dir(source, key)
        if not self.is_complete(bank):
            raise FileNotFoundError(
                f"No complete synthesis bank in {bank}; build it with `SynthesisCache.build` or `anomalysynth cache`."
            )
        return CachedSyntheticDataset(bank)


class CachedSyntheticDataset(Dataset):
    """Items of a complete bank, checksum-verified on every read."""

    def __init__(self, bank: str | Path) -> None:
        self.bank = Path(bank)
        manifest_path = self.bank / "manifest.json"
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CacheCorruptError(f"Cannot read the bank manifest {manifest_path}: {err}") from err
        self.checksums = self.manifest["checksums"]

    def __len__(self) -> int:
        return int(self.manifest["count"])

    @property
    def collate_fn(self) -> Any:
        return SyntheticImageBatch.collate

    def __getitem__(self, index: int) -> SyntheticImageItem:
        entry = read_entry(self.bank, index, self.checksums.get(str(index)))
        return SyntheticImageItem(
            image=Image(entry["image"]),
            gt_label=entry["label"],
            gt_mask=Mask(entry["mask"][0] > 0),
            image_path=entry["source_key"],
            mask_path=None,
            source_image=entry["source_image"],
            anomaly_strength=entry["strength"],
            synthesis_params=entry.get("params"),
        )


# ---------------------------------------------------------------------- entries
def make_entry(source: SyntheticAnomalyDataset, index: int) -> dict[str, Any]:
    """Entry ``index`` made alone: exactly what ``source[index]`` returns (epoch 0)."""
    batch = SourceImages(source)([index])
    ((_, entry),) = synthesize_entries(source.synthesizer, batch, source.seed, source.anomaly_ratio)
    return entry


def synthesize_entries(
    synthesizer: Synthesizer, batch: dict[str, Any], seed: int, anomaly_ratio: float
) -> list[tuple[int, dict[str, Any]]]:
    """The entries of a block (a :class:`SourceImages` batch), synthesized as whole batches on the images' device.

    Images of one shape form one batch; sample ``i`` is drawn from ``(seed, epoch 0,
    keys[i])`` (:func:`~anomalysynth.synth.keyed.synthesize_keyed`), so an entry does not
    depend on which block, batch or rank made it. Entries come back on the CPU, each
    tensor in its own storage (a slice would save the whole batch).
    """
    images: list[Tensor] = batch["images"]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for position, image in enumerate(images):
        groups.setdefault((tuple(image.shape), image.dtype), []).append(position)
    entries: list[tuple[int, dict[str, Any]] | None] = [None] * len(images)
    for positions in groups.values():
        stacked = torch.stack([images[p] for p in positions])
        keys = [batch["keys"][p] for p in positions]
        out = synthesize_keyed(synthesizer, stacked, keys, seed, anomaly_ratio, epoch=0)
        for j, p in enumerate(positions):
            entries[p] = (
                int(batch["indices"][p]),
                {
                    "image": _own(out.image[j]),
                    "mask": _own((out.mask[j] > 0).float()),
                    "label": _own(out.label[j].long()),
                    "strength": _own(out.strength[j].float()),
                    "source_image": _own(images[p]),
                    "source_index": int(batch["indices"][p]),
                    "source_key": batch["source_keys"][p],
                    "params": {k: _own(v[j]) for k, v in out.params.items()},
                },
            )
    return [e for e in entries if e is not None]


def _own(tensor: Tensor) -> Tensor:
    """A contiguous CPU copy with a storage of its own."""
    return tensor.detach().to("cpu").clone(memory_format=torch.contiguous_format)


def write_entry(bank: Path, index: int, entry: dict[str, Any]) -> None:
    """Write an entry and then its checksum, each atomically."""
    path = _entry_path(bank, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = torch_bytes(entry)
    atomic_write_bytes(path, payload)
    atomic_write_bytes(_checksum_path(bank, index), (hashlib.sha256(payload).hexdigest() + "\n").encode())


def read_entry(bank: Path, index: int, checksum: str | None = None) -> dict[str, Any]:
    """Read and verify entry ``index``; raises :class:`CacheCorruptError` naming the file."""
    path = _entry_path(bank, index)
    try:
        payload = path.read_bytes()
    except OSError as err:
        raise CacheCorruptError(f"Synthesis cache entry {path} cannot be read: {err}") from err
    if checksum is None:
        try:
            checksum = _checksum_path(bank, index).read_text().strip()
        except OSError as err:
            raise CacheCorruptError(f"Synthesis cache entry {path} has no checksum file.") from err
    if hashlib.sha256(payload).hexdigest() != checksum:
        raise CacheCorruptError(f"Synthesis cache entry {path} is corrupt or truncated (checksum mismatch).")
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _is_written(bank: Path, index: int) -> bool:
    """The checksum is renamed into place after the entry, so its presence marks a complete entry."""
    return _checksum_path(bank, index).is_file() and _entry_path(bank, index).is_file()


def _entry_path(bank: Path, index: int) -> Path:
    return bank / "entries" / f"{index:08d}.pt"


def _checksum_path(bank: Path, index: int) -> Path:
    return bank / "entries" / f"{index:08d}.sha256"


# ---------------------------------------------------------------------- building
class SourceImages:
    """Reads a block's clean source images and keys (no synthesizer: the DataLoader only loads).

    Called with a list of indices, returns ``{"indices", "images", "keys", "source_keys"}``.
    """

    def __init__(self, source: SyntheticAnomalyDataset) -> None:
        self.source = copy.copy(source)
        self.source.synthesizer = None  # type: ignore[assignment]  # workers never get the model

    def __call__(self, indices: list[int]) -> dict[str, Any]:
        images, keys, names = [], [], []
        for index in indices:
            image, key, item = self.source.source(index)
            images.append(image.contiguous())
            keys.append(key)
            names.append(str(getattr(item, "image_path", None) or key))
        return {
            "indices": torch.tensor(indices, dtype=torch.long),
            "images": images,
            "keys": keys,
            "source_keys": names,
        }


class SynthesisPredictor(BlockPredictor):
    """Makes a bank's entries block by block on the module's device.

    The synthesizer is a submodule, so ``Trainer.predict`` (or ``.to(device)``) moves it
    to the accelerator; each ``predict_step`` synthesizes a whole block there, and each
    rank makes and writes only its own blocks (:mod:`anomalysynth.sharding`).

    Args:
        source: the on-the-fly dataset the bank caches.
        bank: the bank folder.
        batch_size: entries per block.
        num_workers: DataLoader workers reading the source images.
    """

    def __init__(
        self,
        source: SyntheticAnomalyDataset,
        bank: str | Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        num_workers: int = 0,
    ) -> None:
        super().__init__(len(source), batch_size=batch_size, num_workers=num_workers)
        self.synthesizer = source.synthesizer
        self.seed = source.seed
        self.anomaly_ratio = source.anomaly_ratio
        self.bank = Path(bank)
        self.images = SourceImages(source)

    def is_written(self, index: int) -> bool:
        return _is_written(self.bank, index)

    def block_loader_fn(self) -> SourceImages:
        return self.images

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[tuple[int, dict]]:
        return synthesize_entries(self.synthesizer, batch, self.seed, self.anomaly_ratio)

    def write_block(self, prediction: list[tuple[int, dict]]) -> None:
        for index, entry in prediction:
            if not _is_written(self.bank, index):
                write_entry(self.bank, index, entry)


def build_with_trainer(
    cache: SynthesisCache,
    source: SyntheticAnomalyDataset,
    trainer_kwargs: dict[str, Any] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
) -> Path:
    """Build the bank through ``Trainer.predict`` (any accelerator and strategy: DDP over devices and nodes).

    Each rank synthesizes its own blocks on its device and writes them; rank 0 writes
    the manifest once every rank's entries are on disk.
    """
    key = cache.key(source)
    bank = cache.bank_dir(source, key)
    if cache.is_complete(bank):
        return bank
    predictor = SynthesisPredictor(source, bank, batch_size=batch_size, num_workers=num_workers)
    device = module_device(source.synthesizer)
    try:
        trainer = predict_blocks(predictor, trainer_kwargs)
    finally:
        source.synthesizer.to(device)  # Lightning leaves the module on the CPU
    if trainer.is_global_zero and not cache.is_complete(bank):
        cache.finalize(bank, source)
    trainer.strategy.barrier("anomalysynth-cache-finalized")
    return bank


def build_in_strategy(
    cache: SynthesisCache,
    source: SyntheticAnomalyDataset,
    trainer: pl.Trainer,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int = 0,
) -> str:
    """Build the bank inside a running job: every rank makes its share on its device, then a barrier.

    For a datamodule's ``setup`` under DDP, where a second ``Trainer`` cannot run: the
    key (hashed once, on rank 0) and "is it complete" are rank 0's, broadcast; each
    rank synthesizes its own blocks on ``trainer.strategy.root_device``, and rank 0
    writes the manifest after a barrier. Every rank must call it. Returns the key.
    """
    strategy = trainer.strategy
    key: str = strategy.broadcast(cache.key(source) if trainer.is_global_zero else "", src=0)
    bank = cache.bank_dir(source, key)
    if strategy.broadcast(cache.is_complete(bank), src=0):
        return key
    predictor = SynthesisPredictor(source, bank, batch_size=batch_size, num_workers=num_workers)
    predictor.run(trainer.global_rank, trainer.world_size, device=strategy.root_device)
    strategy.barrier("anomalysynth-cache-written")
    if trainer.is_global_zero and not cache.is_complete(bank):
        cache.finalize(bank, source)
    strategy.barrier("anomalysynth-cache-finalized")
    return key

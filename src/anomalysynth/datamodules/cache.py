"""The synthesis cache: a bank of synthetic samples on disk.

A bank lives in ``<root>/<key>/`` where ``key`` hashes the synthesizer's config,
the source images' content, the seed and the anomaly ratio, so a changed setting
never reuses stale entries. Entry ``i`` is ``entries/<i>.pt`` (image, mask, label,
strength, clean source image, source index and key) with its SHA-256 in
``entries/<i>.sha256``. Both are written to a temporary file and renamed into
place, the checksum last, so an entry exists only when it is complete: a build
killed at any point resumes where it stopped, and writers on several ranks never
collide (each entry is deterministic; a rename replaces it atomically).
``manifest.json`` (also written atomically) records the config and every
checksum once the bank is complete. Reading verifies the checksum and names the
file when it does not match.

Entries are built through Lightning's predict loop (:func:`build_with_trainer`,
``anomalysynth cache``), so generation spreads over devices and nodes with
Lightning's own strategies, or in-process (:func:`SynthesisCache.build`).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.tv_tensors import Image, Mask
from tqdm.auto import tqdm

from anomalysynth.datamodules.synthetic import SyntheticAnomalyDataset, SyntheticImageBatch, SyntheticImageItem
from anomalysynth.files import atomic_write_bytes, torch_bytes

__all__ = ["CacheCorruptError", "CachedSyntheticDataset", "SynthesisCache", "build_with_trainer"]

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
        """Hash of the synthesizer config, the source images' content, the seed and the anomaly ratio."""
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                {
                    "format": _FORMAT,
                    "synthesizer": source.synthesizer.config(),
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

    def build(self, source: SyntheticAnomalyDataset, progress: bool = True, key: str | None = None) -> Path:
        """Build (or finish) the bank of ``source`` in this process; returns its folder."""
        bank = self.bank_dir(source, key)
        todo = self.missing(bank, len(source))
        for index in tqdm(todo, desc=f"synthesis cache {bank.name}", disable=not progress or not todo):
            write_entry(bank, index, make_entry(source, index))
        self.finalize(bank, source)
        return bank

    def finalize(self, bank: Path, source: SyntheticAnomalyDataset) -> None:
        """Write ``manifest.json`` once every entry is present."""
        count = len(source)
        if self.missing(bank, count):
            raise RuntimeError(f"Cannot finalize {bank}: {len(self.missing(bank, count))} entries are missing.")
        manifest = {
            "format": _FORMAT,
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
    """Entry ``index``: exactly what ``source[index]`` returns (epoch 0)."""
    item = source[index]
    return {
        "image": Tensor(item.image).as_subclass(Tensor).contiguous(),
        "mask": Tensor(item.gt_mask).as_subclass(Tensor).unsqueeze(0).float().contiguous(),
        "label": torch.as_tensor(item.gt_label).long(),
        "strength": torch.as_tensor(item.anomaly_strength).float(),
        "source_image": item.source_image.contiguous(),  # type: ignore[union-attr]
        "source_index": index,
        "source_key": str(item.image_path),
        "params": {k: v.contiguous() for k, v in (item.synthesis_params or {}).items()},
    }


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


# ---------------------------------------------------------------------- Lightning predict loop
class _IndexDataset(Dataset):
    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        return self.indices[i]


class SynthesisPredictor(pl.LightningModule):
    """Predict loop module: each predict step synthesizes the entries of a batch of indices."""

    def __init__(self, source: SyntheticAnomalyDataset, bank: Path) -> None:
        super().__init__()
        self.source = source
        self.bank = bank

    def predict_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> list[tuple[int, dict]]:
        # every rank iterates all indices (the same split on every rank) and skips finished entries
        return [(int(i), make_entry(self.source, int(i))) for i in batch if not _is_written(self.bank, int(i))]


class CacheWriter(BasePredictionWriter):
    """Writes each predicted entry into the bank as soon as its batch ends."""

    def __init__(self, bank: Path) -> None:
        super().__init__(write_interval="batch")
        self.bank = bank

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):  # type: ignore[no-untyped-def, override]
        for index, entry in prediction:
            write_entry(self.bank, index, entry)


def build_with_trainer(
    cache: SynthesisCache,
    source: SyntheticAnomalyDataset,
    trainer_kwargs: dict[str, Any] | None = None,
    batch_size: int = 8,
) -> Path:
    """Build the bank through ``Trainer.predict`` (any strategy: DDP over devices and nodes)."""
    key = cache.key(source)
    bank = cache.bank_dir(source, key)
    kwargs: dict[str, Any] = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False}
    kwargs.update(trainer_kwargs or {})
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), CacheWriter(bank)]
    trainer = pl.Trainer(**kwargs)
    if cache.missing(bank, len(source)):
        loader = DataLoader(_IndexDataset(range(len(source))), batch_size=batch_size, shuffle=False)
        trainer.predict(SynthesisPredictor(source, bank), loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.is_global_zero:
        cache.finalize(bank, source)
    trainer.strategy.barrier()
    return bank

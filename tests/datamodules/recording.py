"""Test helpers for multi-process bank builds: a synthesizer that records where and what it
synthesized, and the smallest LightningModule that trains on synthetic batches.

They live in an importable module (not a test file's body) so processes started with
the ``spawn`` method can unpickle them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import Tensor

from anomalysynth.synth import CutPaste


def image_digest(image: Tensor) -> str:
    return hashlib.sha256(image.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


class RecordingCutPaste(CutPaste):
    """CutPaste that appends one JSON line per ``sample_params`` call to ``<log_dir>/<pid>.jsonl``:
    the process's rank, the batch size, the device of the images and of its own buffer, and a
    digest of every image. ``log_dir`` is an attribute, not a constructor argument, so the
    config (the cache key) stays that of a plain CutPaste."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.register_buffer("probe", torch.zeros(1))
        self.log_dir: str | None = None

    def sample_params(self, images, generator=None, anomaly_ratio=None):  # type: ignore[no-untyped-def, override]
        if self.log_dir is not None:
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            record = {
                "rank": rank,
                "pid": os.getpid(),
                "batch": int(images.shape[0]),
                "images_device": str(images.device),
                "probe_device": str(self.probe.device),
                "digests": [image_digest(x) for x in images],
            }
            path = Path(self.log_dir) / f"{os.getpid()}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        return super().sample_params(images, generator, anomaly_ratio)


def read_records(log_dir: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(Path(log_dir).glob("*.jsonl")) for line in p.read_text().splitlines()]


class TinyModel(pl.LightningModule):
    """One weight; the loss reads the batch so DDP has a gradient to reduce."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        return ((batch.image.mean() - self.weight) ** 2).sum()

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.1)

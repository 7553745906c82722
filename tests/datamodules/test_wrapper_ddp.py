"""Fresh anomalies every epoch under 2-process DDP (gloo on CPU), equal to the 1-process run's.

The trained module writes what each rank saw, (image path, epoch) -> (image, mask, label),
to a folder; the test compares ranks, epochs and the 1-process run.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from anomalysynth.datamodules import SyntheticAnomalyDataModule
from anomalysynth.synth import create_synthesizer
from tests.conftest import quiet_trainer

Seen = dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor, bool]]


class RecordingModule(pl.LightningModule):
    """One weight; writes ``rank<r>_epoch<e>.pt`` with every item its rank trained on in that epoch."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.records: list[tuple[str, int, torch.Tensor, torch.Tensor, bool]] = []

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        for i, path in enumerate(batch.image_path):
            image, mask = batch.image[i].detach().clone(), batch.gt_mask[i].detach().clone()
            self.records.append((path, self.current_epoch, image, mask, bool(batch.gt_label[i])))
        return ((batch.image.mean() - self.weight) ** 2).sum()

    def on_train_epoch_end(self) -> None:
        dist = torch.distributed
        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else "none"
        path = Path(self.out_dir) / f"rank{self.global_rank}_epoch{self.current_epoch}.pt"
        torch.save({"backend": backend, "records": self.records}, path)
        self.records = []

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.SGD(self.parameters(), lr=0.1)


def train(folder, out_dir: Path, backend: str, **trainer_kwargs) -> dict[int, Seen]:
    """Two epochs on fresh Perlin-texture anomalies (every item anomalous); what each rank saw."""
    out_dir.mkdir()
    dm = SyntheticAnomalyDataModule(folder, create_synthesizer("perlin_texture"), anomaly_ratio=1.0, seed=7)
    assert dm.reseed_every_epoch  # the default
    trainer = quiet_trainer(out_dir, max_epochs=2, limit_val_batches=0, **trainer_kwargs)
    trainer.fit(RecordingModule(str(out_dir)), datamodule=dm)
    seen: dict[int, Seen] = {}
    for path in sorted(out_dir.glob("rank*_epoch*.pt")):
        rank = int(path.stem.split("_")[0].removeprefix("rank"))
        saved = torch.load(path, weights_only=True)
        assert saved["backend"] == backend
        for key, epoch, image, mask, label in saved["records"]:
            assert (key, epoch) not in seen.setdefault(rank, {}), "an item was seen twice in one epoch"
            seen[rank][(key, epoch)] = (image, mask, label)
    return seen


# spawn, not fork: a forked rank inherits the parent's busy thread pools (numba, OpenMP) and can deadlock
@pytest.mark.parametrize("strategy", [pytest.param("ddp_spawn", marks=pytest.mark.slow)])
def test_two_ddp_processes_see_disjoint_fresh_anomalies_equal_to_one_process(tiny_folder, tmp_path, strategy):
    single = train(tiny_folder, tmp_path / "one", "none", devices=1)
    double = train(tiny_folder, tmp_path / "two", "gloo", devices=2, strategy=strategy)
    assert set(single) == {0} and set(double) == {0, 1}
    keys = {key for key, _ in single[0]}
    assert len(keys) == 10
    for epoch in (0, 1):
        shares = [{key for key, e in double[rank] if e == epoch} for rank in (0, 1)]
        assert len(shares[0]) == len(shares[1]) == 5 and not shares[0] & shares[1], "ranks see disjoint items"
        assert shares[0] | shares[1] == keys
    merged = {**double[0], **double[1]}
    for rank in (0, 1):
        for (key, epoch), (image, mask, label) in double[rank].items():
            # the 1-process run's anomaly for the same (seed, epoch, key), bit for bit
            expected = single[0][(key, epoch)]
            assert torch.equal(image, expected[0]) and torch.equal(mask, expected[1]) and label == expected[2]
            # a fresh anomaly in the other epoch, whichever rank drew the image then
            other = merged[(key, 1 - epoch)]
            assert label and other[2]
            assert not torch.equal(image, other[0]) and not torch.equal(mask, other[1])

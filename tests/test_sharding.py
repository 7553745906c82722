"""Fixed blocks dealt to ranks: disjoint, complete, resumable; the module follows the device."""

from __future__ import annotations

import pytest
import torch

from anomalysynth.sharding import BlockPredictor, module_device, shard_blocks


@pytest.mark.parametrize("count", [0, 1, 7, 16, 33])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("world_size", [1, 2, 3, 5])
def test_ranks_get_disjoint_blocks_that_cover_every_entry(count, batch_size, world_size):
    shares = [shard_blocks(count, batch_size, rank, world_size) for rank in range(world_size)]
    entries = [i for share in shares for block in share for i in block]
    assert sorted(entries) == list(range(count))  # each entry once: no padding duplicates, none left out
    blocks = sorted(tuple(b) for share in shares for b in share)
    # the blocks are those of one process: the same batches whatever the number of processes
    assert blocks == sorted(tuple(b) for b in shard_blocks(count, batch_size))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((5, 0, 0, 1), "batch_size"),
        ((-1, 2, 0, 1), "count"),
        ((5, 2, 2, 2), "rank"),
        ((5, 2, 0, 0), "world_size"),
        ((5, 2.0, 0, 1), "batch_size"),
    ],
)
def test_bad_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        shard_blocks(*args)


class _Squares(BlockPredictor):
    """Writes i * scale for every entry into ``self.written``."""

    def __init__(self, count: int, batch_size: int) -> None:
        super().__init__(count, batch_size)
        self.scale = torch.nn.Linear(1, 1, bias=False)
        self.written: dict[int, float] = {}
        self.batches: list[list[int]] = []

    def is_written(self, index: int) -> bool:
        return index in self.written

    def predict_step(self, batch, batch_idx, dataloader_idx=0):  # type: ignore[no-untyped-def]
        assert batch["indices"].device == self.scale.weight.device
        self.batches.append(batch["indices"].tolist())
        return batch["indices"].tolist()

    def write_block(self, prediction) -> None:  # type: ignore[no-untyped-def]
        for i in prediction:
            self.written.setdefault(i, float(i))


def test_run_writes_this_ranks_blocks_and_a_resumed_run_skips_finished_ones():
    predictor = _Squares(10, 3)
    assert predictor.run(rank=1, world_size=2) == 2
    assert predictor.batches == [[3, 4, 5], [9]]
    predictor.batches.clear()
    del predictor.written[4]
    predictor.run(rank=0, world_size=1)
    # a block with a missing entry is made again whole (same batch as before); finished ones are skipped
    assert predictor.batches == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert sorted(predictor.written) == list(range(10))
    assert predictor.run() == 0


def test_run_moves_the_module_for_the_run_and_back():
    predictor = _Squares(4, 2).to(torch.float64)
    predictor.run(device="cpu")
    assert module_device(predictor) == torch.device("cpu")
    assert predictor.scale.weight.dtype == torch.float64
    with pytest.raises(ValueError, match="num_workers"):
        BlockPredictor(4, 2, num_workers=-1)

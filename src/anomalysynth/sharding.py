"""Banks built in fixed blocks, sharded over ranks, on the device, through Lightning's predict loop.

A bank of ``count`` entries (the synthesis cache, an SDAS texture bank) is cut into
fixed blocks of ``batch_size`` consecutive entries: block ``b`` holds entries
``[b * batch_size, (b + 1) * batch_size)`` and belongs to rank ``b % world_size``.
So

* no rank repeats another's entries (no padding duplicates as a plain
  ``DistributedSampler`` adds), and every rank writes only its own entries;
* a block is made as one batch on the device, and the batches are the same whatever
  the number of processes: a bank built by 1 or by N processes is identical file for
  file, even for a model whose batched arithmetic depends on the batch;
* a block whose entries are all written is skipped, so a killed build resumes (a
  block with some entries missing is made again whole, and only the missing entries
  are written).

:class:`BlockPredictor` is a LightningModule: a subclass owns its model as a
submodule (so Lightning, or ``.to(device)``, moves it), loads a block's inputs on the
CPU in :meth:`~BlockPredictor.load_block` (in DataLoader workers), computes the block
on the device in ``predict_step`` and writes it in :meth:`~BlockPredictor.write_block`
(atomically, on the rank that made it). :func:`predict_blocks` runs it through
``Trainer.predict`` with any strategy (DDP over devices and nodes);
:meth:`BlockPredictor.run` runs one rank's share in-process, e.g. inside a running
DDP fit where each rank already knows its rank and device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

__all__ = ["BlockPredictor", "BlockWriter", "module_device", "predict_blocks", "shard_blocks"]


def shard_blocks(count: int, batch_size: int, rank: int = 0, world_size: int = 1) -> list[list[int]]:
    """The blocks of rank ``rank``: ``[b * batch_size, ...)`` for ``b = rank, rank + world_size, ...``."""
    for name, value, low in (("count", count, 0), ("batch_size", batch_size, 1), ("world_size", world_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"`{name}` must be an integer >= {low}; got {value!r}.")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"`rank` must be an integer in [0, {world_size}); got {rank!r}.")
    starts = range(rank * batch_size, count, world_size * batch_size)
    return [list(range(start, min(start + batch_size, count))) for start in starts]


class _Blocks(Dataset):
    """Item ``i`` is block ``blocks[i]``'s inputs, loaded by ``load``."""

    def __init__(self, blocks: Sequence[Sequence[int]], load: Callable[[list[int]], Any]) -> None:
        self.blocks = [list(b) for b in blocks]
        self.load = load

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> Any:
        return self.load(self.blocks[i])


def _single(items: list[Any]) -> Any:
    """Collate of a loader whose every item is already a whole block."""
    return items[0]


class BlockPredictor(pl.LightningModule):
    """Makes a bank block by block, each block as one batch on the module's device.

    Args:
        count: number of entries of the bank.
        batch_size: entries per block (one ``predict_step``).
        num_workers: DataLoader workers loading the blocks' inputs.

    Subclasses implement :meth:`is_written`, :meth:`write_block`, ``predict_step``
    and, when entries have inputs to read, :meth:`block_loader_fn`.
    """

    def __init__(self, count: int, batch_size: int = 8, num_workers: int = 0) -> None:
        super().__init__()
        shard_blocks(count, batch_size)  # validates both
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"`num_workers` must be an integer >= 0; got {num_workers!r}.")
        self.count = int(count)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)

    # -- what a subclass says -------------------------------------------------------------
    def is_written(self, index: int) -> bool:
        """Whether entry ``index`` is already complete on disk."""
        raise NotImplementedError

    def write_block(self, prediction: Any) -> None:
        """Write what ``predict_step`` returned for one block (only its missing entries, atomically)."""
        raise NotImplementedError

    def block_loader_fn(self) -> Callable[[list[int]], Any]:
        """A picklable function ``indices -> batch`` run on the CPU (in DataLoader workers).

        The default gives ``{"indices": LongTensor}``. It must not hold the model: the
        workers load inputs, the device computes.
        """
        return _indices_only

    # -- the blocks of a rank ---------------------------------------------------------------
    def todo_blocks(self, rank: int = 0, world_size: int = 1) -> list[list[int]]:
        """This rank's blocks with at least one entry not written yet."""
        return [b for b in shard_blocks(self.count, self.batch_size, rank, world_size) if not self._block_done(b)]

    def _block_done(self, block: list[int]) -> bool:
        return all(self.is_written(i) for i in block)

    def block_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """The DataLoader of this rank's unfinished blocks (one block per batch, in order)."""
        dataset = _Blocks(self.todo_blocks(rank, world_size), self.block_loader_fn())
        return DataLoader(dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=_single)

    def predict_dataloader(self) -> DataLoader:
        """Lightning's hook: called in every process after launch, so the rank is known here."""
        trainer = self._trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return self.block_dataloader(rank, world)

    # -- in-process -------------------------------------------------------------------------
    @torch.no_grad()
    def run(
        self,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
        progress: bool = False,
        desc: str = "bank",
    ) -> int:
        """Make and write this rank's unfinished blocks here, on ``device``; returns the number of blocks made.

        The module is moved to ``device`` for the run and moved back afterwards.
        """
        loader = self.block_dataloader(rank, world_size)
        if len(loader) == 0:
            return 0
        original = module_device(self)
        target = torch.device(device) if device is not None else original
        was_training = self.training
        self.to(target).eval()
        try:
            for batch_idx, batch in enumerate(tqdm(loader, desc=desc, disable=not progress, unit="block")):
                self.write_block(self.predict_step(move_data_to_device(batch, target), batch_idx))
        finally:
            self.to(original).train(was_training)
        return len(loader)


def module_device(module: torch.nn.Module) -> torch.device:
    """Where ``module``'s first parameter or buffer lives (a LightningModule's own device if it has none)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return getattr(module, "device", torch.device("cpu"))


def _indices_only(indices: list[int]) -> dict[str, torch.Tensor]:
    return {"indices": torch.tensor(indices, dtype=torch.long)}


class BlockWriter(BasePredictionWriter):
    """Hands each block's prediction to :meth:`BlockPredictor.write_block` as soon as the block ends."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):  # type: ignore[no-untyped-def, override]
        pl_module.write_block(prediction)


def predict_blocks(predictor: BlockPredictor, trainer_kwargs: dict[str, Any] | None = None) -> pl.Trainer:
    """Run ``predictor`` through ``Trainer.predict``; every rank makes and writes its own blocks.

    ``trainer_kwargs`` go to ``pl.Trainer`` (accelerator, devices, strategy, num_nodes...);
    the default is one CPU process. The sharding is the predictor's, so Lightning's
    distributed sampler is switched off. Returns the trainer after a barrier: every
    rank's entries are on disk when it returns.
    """
    kwargs: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
    }
    kwargs.update(trainer_kwargs or {})
    kwargs["use_distributed_sampler"] = False
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), BlockWriter()]
    trainer = pl.Trainer(**kwargs)
    trainer.predict(predictor, return_predictions=False)
    trainer.strategy.barrier("anomalysynth-bank-written")
    return trainer

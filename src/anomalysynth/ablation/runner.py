"""Run an ablation grid: skip finished runs, run the others, append each row as it finishes."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm.auto import tqdm

from anomalysynth.ablation.executors import Executor, LocalExecutor
from anomalysynth.ablation.grid import AblationGrid, RunSpec
from anomalysynth.ablation.table import OK, ResultsTable

__all__ = ["run_grid"]

logger = logging.getLogger(__name__)


def run_grid(
    grid: AblationGrid, executor: Executor | None = None, only: str | None = None, progress: bool = True
) -> ResultsTable:
    """Run every pending run of ``grid`` (finished ones are skipped, failed ones re-run).

    Args:
        grid: the parsed grid.
        executor: where runs execute (default: sequential, in this process).
        only: run only the runs whose id contains this text.
        progress: a progress bar over the pending runs.

    Returns:
        The results table (``results.jsonl`` and ``results.csv`` under ``grid.output``).
    """
    executor = executor or LocalExecutor()
    table = ResultsTable(grid.output)
    specs = [s for s in grid.runs() if only is None or only in s.run_id]
    finished = table.finished()
    pending: list[RunSpec] = [s for s in specs if s.run_id not in finished]
    logger.info("%s: %d runs, %d finished, %d to run", grid.name, len(specs), len(specs) - len(pending), len(pending))
    runs_dir = Path(grid.output) / "runs"
    with tqdm(total=len(pending), desc=f"ablation {grid.name}", disable=not progress) as bar:
        for row in executor.map(pending, runs_dir):
            table.append(row)
            if row.get("status") != OK:
                logger.warning("run %s failed: %s", row["run_id"], row.get("error"))
            bar.update(1)
    table.write_csv(order=[s.run_id for s in grid.runs()])
    return table

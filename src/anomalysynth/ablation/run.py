"""One ablation run: a Lightning fit and test from a config, with the config written beside its result.

``run_dir/config.yaml`` is written first (atomically), then the run is built with
LightningCLI (class paths as in ``lightning fit -c``), fitted and tested;
``run_dir/result.json`` holds the row that the runner appends to the table. A run
that raises returns a ``failed`` row with the error; the next ``ablate`` re-runs it.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from anomalysynth.ablation.table import FAILED, OK
from anomalysynth.files import atomic_write_bytes

__all__ = ["execute_run"]


def execute_run(run_id: str, levels: dict[str, str], config: dict[str, Any], run_dir: str) -> dict[str, Any]:
    """Fit and test one run; never raises (a failure is a ``failed`` row)."""
    folder = Path(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    trainer = dict(config.get("trainer") or {})
    trainer.setdefault("default_root_dir", str(folder))
    trainer.setdefault("logger", False)
    config["trainer"] = trainer
    atomic_write_bytes(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    row: dict[str, Any] = {"run_id": run_id, **{f"axis.{k}": v for k, v in levels.items()}}
    start = time.perf_counter()
    try:
        metrics = _fit_and_test(config)
        row.update(status=OK, **metrics)
    except Exception as err:  # a failed run must not stop the grid
        row.update(status=FAILED, error=f"{type(err).__name__}: {err}")
        atomic_write_bytes(folder / "error.txt", traceback.format_exc().encode())
    row["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_bytes(folder / "result.json", json.dumps(row, indent=1).encode())
    return row


def _fit_and_test(config: dict[str, Any]) -> dict[str, float]:
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    import anomalysynth  # noqa: F401  (registers the offline backbones)

    argv, sys.argv = sys.argv, sys.argv[:1]  # the run is its config alone, whatever this process was started with
    try:
        cli = LightningCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            run=False,
            args=config,
            save_config_callback=None,
            auto_configure_optimizers=False,
            parser_kwargs={"exit_on_error": False},
        )
    finally:
        sys.argv = argv
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    results = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    metrics: dict[str, float] = {}
    for part in results:
        metrics.update({k: float(v) for k, v in part.items()})
    return metrics

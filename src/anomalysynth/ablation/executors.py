"""Where runs execute: this machine (in-process or N worker processes) or a Ray cluster.

An executor takes the pending runs and yields each finished row as soon as it
exists; the runner appends it to the table at once, so a killed ablation keeps
every row finished before the kill.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from anomalysynth.ablation.grid import RunSpec
from anomalysynth.ablation.run import execute_run

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "create_executor"]


class Executor:
    """Runs specs and yields their rows (in completion order)."""

    def map(self, specs: list[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError


class LocalExecutor(Executor):
    """Sequential in this process (``workers=1``), or ``workers`` spawned processes."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"`workers` must be >= 1; got {workers}.")
        self.workers = workers

    def map(self, specs: list[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        if self.workers == 1:
            for spec in specs:
                yield execute_run(spec.run_id, spec.levels, spec.config, str(runs_dir / spec.run_id))
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            futures = [pool.submit(execute_run, s.run_id, s.levels, s.config, str(runs_dir / s.run_id)) for s in specs]
            for future in as_completed(futures):
                try:
                    yield future.result()
                except BrokenProcessPool:  # a worker died (killed, out of memory): its runs stay pending
                    continue


class RayExecutor(Executor):
    """Each run a Ray task with its CPU/GPU request, on a running cluster or a local one.

    Args:
        address: a Ray cluster address (``"auto"``, ``"ray://host:10001"``) or ``None``
            for a local instance.
        num_cpus: CPUs of the local instance (``None``: all).
        run_cpus, run_gpus: the resources each run requests.
    """

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, run_cpus: float = 1.0, run_gpus: float = 0.0
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise ImportError(
                "The Ray executor needs Ray: `pip install 'anomalysynth[ray]'` (or `pip install ray`)."
            ) from err
        self.ray = ray
        self.address = address
        self.num_cpus = num_cpus
        self.run_cpus = run_cpus
        self.run_gpus = run_gpus

    def map(self, specs: list[RunSpec], runs_dir: Path) -> Iterator[dict[str, Any]]:
        ray = self.ray
        started = False
        if not ray.is_initialized():
            # the workers import what this process can import (the project, the configs' class paths)
            env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
            kwargs: dict[str, Any] = {"runtime_env": env, "include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(address=self.address, **kwargs)
            started = True
        try:
            task = ray.remote(num_cpus=self.run_cpus, num_gpus=self.run_gpus, max_retries=0)(execute_run)
            pending = [task.remote(s.run_id, s.levels, s.config, str((runs_dir / s.run_id).resolve())) for s in specs]
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError:  # a worker died: the run stays pending
                        continue
        finally:
            if started:
                ray.shutdown()


def create_executor(name: str = "local", workers: int = 1, **ray_options: Any) -> Executor:
    """``"local"`` (``workers`` processes) or ``"ray"`` (``ray_options`` go to :class:`RayExecutor`)."""
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(**ray_options)
    raise ValueError(f"Unknown executor {name!r}; expected 'local' or 'ray'.")

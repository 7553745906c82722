"""A small thread pool for the kernels: one slice of the batch per torch thread.

The kernels release the GIL, so plain Python threads run them in parallel without
a numba threading layer, which keeps them safe under ``fork`` (a forked child
rebuilds its pool). The pool is sized by ``torch.get_num_threads()``: one thread in
DataLoader workers.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["parallel", "parallel_samples"]

_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)
_pool_lock = threading.Lock()


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    with _pool_lock:
        key = (os.getpid(), threads)  # a forked child rebuilds its pool
        if _pool is None or _pool_key != key:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="anomalysynth")
            _pool_key = key
        return _pool


def parallel(batch: int, run: Callable[[int, int], Any]) -> None:
    """``run(start, stop)`` over slices of ``range(batch)``, one per torch thread."""
    threads = max(1, min(torch.get_num_threads(), batch))
    if threads == 1:
        run(0, batch)
        return
    pool = _get_pool(threads)
    bounds = [batch * i // threads for i in range(threads + 1)]
    futures = [pool.submit(run, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    run(bounds[0], bounds[1])
    for future in futures:
        future.result()


_local = threading.local()


def parallel_samples(batch: int, make_work: Callable[[], tuple], key: tuple, run: Callable[[int, tuple], Any]) -> None:
    """``run(i, work)`` for every sample ``i``, samples handed out one at a time to the
    torch threads (their costs differ several-fold: rotations, histograms), each thread
    with its own work arrays, kept between calls (no allocation, no page faults)."""
    counter = itertools.count()

    def worker() -> None:
        cached = getattr(_local, "work", None)
        if cached is None or cached[0] != key:
            cached = (key, make_work())
            _local.work = cached
        work = cached[1]
        while (i := next(counter)) < batch:  # next() on a count is atomic under the GIL
            run(i, work)

    threads = max(1, min(torch.get_num_threads(), batch))
    if threads == 1:
        worker()
        return
    futures = [_get_pool(threads).submit(worker) for _ in range(threads - 1)]
    worker()
    for future in futures:
        future.result()

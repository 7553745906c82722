"""numba, when installed, and the two decorators every kernel uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["NUMBA_ERROR", "as_array", "jit", "jit_inline", "numba"]

numba: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba

    NUMBA_ERROR: str | None = None
except ImportError as err:  # pragma: no cover
    numba = None
    NUMBA_ERROR = str(err)


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Compile ``fn`` (cached on disk, GIL released, numpy error model)."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")(fn)


def jit_inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For small per-pixel helpers: inlined into the caller (a call per pixel costs more than the work)."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")(fn)


def as_array(t: Tensor) -> np.ndarray:
    """A contiguous numpy view (or copy) of a CPU tensor."""
    return t.detach().contiguous().numpy()

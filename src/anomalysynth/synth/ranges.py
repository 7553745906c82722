"""Validation of (min, max) constructor arguments."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["check_range"]


def check_range(name: str, value: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """``value`` as a float pair, or ValueError unless it is a (min, max) pair within [low, high]."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a (min, max) pair within [{low}, {high}]; got {value!r}.") from None
    if not low <= lo <= hi <= high:
        raise ValueError(f"`{name}` must be a (min, max) pair within [{low}, {high}]; got {value!r}.")
    return lo, hi

"""Synthesizers by name: ``create_synthesizer("perlin_texture", texture_dir=...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from anomalysynth.synth.base import Synthesizer

__all__ = ["available_synthesizers", "create_synthesizer", "register_synthesizer"]

_REGISTRY: dict[str, type[Synthesizer]] = {}
_S = TypeVar("_S", bound="type[Synthesizer]")


def register_synthesizer(name: str) -> Callable[[_S], _S]:
    """Class decorator that registers a synthesizer under ``name``."""

    def decorator(cls: _S) -> _S:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A synthesizer named {name!r} is already registered ({_REGISTRY[name].__name__}).")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_synthesizers() -> list[str]:
    """Names accepted by :func:`create_synthesizer`, sorted."""
    return sorted(_REGISTRY)


def create_synthesizer(name: str, **kwargs: object) -> Synthesizer:
    """Build a registered synthesizer by name, e.g. ``create_synthesizer("perlin_texture", texture_dir="dtd")``."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown synthesizer {name!r}; expected one of {available_synthesizers()}.")
    return _REGISTRY[name](**kwargs)  # type: ignore[arg-type]

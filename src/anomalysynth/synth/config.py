"""Constructor arguments as plain data, and objects rebuilt from them.

``config_of(obj)`` is what ``Synthesizer.config()`` and every synthesizer part
return: ``{"class": "module.Qualname", <each constructor argument>: <its value>}``,
JSON-able, with nested synthesizers and parts as nested configs. It keys the
synthesis cache. ``from_config(config)`` builds the same object again, so the same
seed gives the same output.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Any

import torch
from torch import Tensor

__all__ = ["config_of", "from_config"]


def config_of(obj: object) -> dict[str, object]:
    """``obj``'s class and constructor arguments (read from attributes of the same names)."""
    out: dict[str, object] = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    for name, parameter in inspect.signature(type(obj).__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        out[name] = _plain(getattr(obj, name, parameter.default))
    return out


def from_config(config: dict[str, Any]) -> Any:
    """Build the object a :func:`config_of` dictionary describes (nested configs too).

    Keys that are not constructor arguments (e.g. ``bank_key``, a record of the bank's
    content) are ignored.
    """
    if not isinstance(config, dict) or not isinstance(config.get("class"), str):
        raise ValueError(f"Expected a config dict with a 'class' key; got {config!r}.")
    module_name, _, qualname = config["class"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"Cannot import {config['class']!r} named by the config.") from err
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: _build(v) for k, v in config.items() if k != "class" and k in accepted}
    return cls(**kwargs)


def _build(value: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("class"), str):
        return from_config(value)
    if isinstance(value, list):
        return [_build(v) for v in value]
    return value


def _plain(value: object) -> object:
    if hasattr(value, "config") and callable(value.config) and not isinstance(value, type):
        return value.config()
    if isinstance(value, torch.nn.ModuleList | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return type(value).__name__

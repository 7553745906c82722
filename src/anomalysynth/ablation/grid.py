"""An ablation grid: a base Lightning config and named axes, expanded into runs.

The YAML file (``anomalysynth ablate -c configs/ablation/<name>.yaml``)::

    name: realnet_sources
    output: results/ablation/realnet_sources     # relative to the working directory
    base_config: ../realnet.yaml                 # a LightningCLI config (relative to this file), and/or
    base: {trainer: {max_epochs: 5}}             # inline keys merged over it
    metrics: [image_AUROC, pixel_AUROC]          # optional: the columns the report shows
    axes:                                        # the grid is their product, in this order
      synthesizer:                               # named levels, each a dict of dotted overrides
        perlin_texture: {data.init_args.synthesizer: {class_path: anomalysynth.synth.PerlinTextureBlend}}
        cutpaste: {data.init_args.synthesizer: {class_path: anomalysynth.synth.CutPaste}}
      detector: {afs: {}, random: {model.init_args.selection: random}}
      seed: {key: seed_everything, values: [0, 1, 2]}      # a list axis: one key, its values
      shots: {key: data.init_args.num_shots, values: [null, 8]}
      curriculum: {key: trainer.callbacks.1.init_args.schedule, values: [linear, cosine]}   # list entry by index

Overrides are applied axis by axis in the order written, so an axis that replaces
a whole sub-config (``data.init_args.synthesizer``) must come before one that sets a
key inside it (a strength). The axis named ``seed`` is the one the report averages
over (mean +- std). A run's id is its levels plus a hash of its full config, so an
edited config never reuses an old result.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["AblationGrid", "RunSpec", "load_grid", "set_dotted"]

SEED_AXIS = "seed"


@dataclass
class RunSpec:
    """One run of the grid: its id, its level per axis and its full Lightning config."""

    run_id: str
    levels: dict[str, str]
    config: dict[str, Any]


@dataclass
class AblationGrid:
    """A parsed grid file."""

    name: str
    output: Path
    base: dict[str, Any]
    axes: dict[str, dict[str, dict[str, Any]]]
    metrics: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1.0, "num_gpus": 0.0})

    def runs(self) -> list[RunSpec]:
        """Every combination of levels, in the axes' order (the last axis varies fastest)."""
        names = list(self.axes)
        out = []
        for combination in itertools.product(*(list(self.axes[a].items()) for a in names)):
            config = copy.deepcopy(self.base)
            levels = {}
            for axis, (label, overrides) in zip(names, combination, strict=True):
                levels[axis] = label
                for key, value in overrides.items():
                    set_dotted(config, key, copy.deepcopy(value))
            digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]
            slug = ",".join(f"{a}={_slug(levels[a])}" for a in names) or "base"
            out.append(RunSpec(f"{slug}-{digest}", levels, config))
        return out


def load_grid(path: str | Path, output: str | Path | None = None) -> AblationGrid:
    """Parse a grid YAML file (see the module docstring); ``output`` overrides its ``output``."""
    path = Path(path)
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with `base`/`base_config` and `axes`; got {type(raw).__name__}.")
    unknown = set(raw) - {"name", "output", "base", "base_config", "axes", "metrics", "resources"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}.")
    base: dict[str, Any] = {}
    if raw.get("base_config"):
        base_path = (path.parent / raw["base_config"]).resolve()
        base = _load_config(base_path)
    for key, value in (raw.get("base") or {}).items():
        set_dotted(base, key, value)
    base.pop("test_after_fit", None)  # every run is tested after fit
    axes = {name: _levels(path, name, spec) for name, spec in (raw.get("axes") or {}).items()}
    name = str(raw.get("name", path.stem))
    out = Path(output if output is not None else raw.get("output", f"results/ablation/{name}"))
    resources = {"num_cpus": 1.0, "num_gpus": 0.0, **(raw.get("resources") or {})}
    return AblationGrid(name, out, base, axes, list(raw.get("metrics") or []), resources)


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating the mappings on the way.

    A part that meets a list is an index into it: ``trainer.callbacks.1.init_args.end``
    sets an argument of the second callback (a curriculum's strength, say).
    """
    parts = key.split(".")
    node: Any = config
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(node, part, key)]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"Cannot set {key!r}: {part!r} is looked up in {node!r}, not a mapping or a list.")
        child = node.get(part)
        if not isinstance(child, dict | list):
            child = {}
            node[part] = child
        node = child
    if isinstance(node, list):
        node[_list_index(node, parts[-1], key)] = value
    elif isinstance(node, dict):
        node[parts[-1]] = value
    else:
        raise ValueError(f"Cannot set {key!r}: {parts[-2]!r} holds {node!r}, not a mapping or a list.")


def _list_index(items: list[Any], part: str, key: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(items) <= int(part) < len(items):
        raise ValueError(f"Cannot set {key!r}: {part!r} must index a list of {len(items)} entries.")
    return int(part)


def _levels(path: Path, axis: str, spec: Any) -> dict[str, dict[str, Any]]:
    if isinstance(spec, dict) and set(spec) == {"key", "values"}:
        if not isinstance(spec["values"], list) or not spec["values"]:
            raise ValueError(f"{path}: axis {axis!r}: `values` must be a non-empty list; got {spec['values']!r}.")
        return {_label(v): {str(spec["key"]): v} for v in spec["values"]}
    if isinstance(spec, dict) and spec and all(isinstance(v, dict) or v is None for v in spec.values()):
        return {str(label): dict(overrides or {}) for label, overrides in spec.items()}
    raise ValueError(
        f"{path}: axis {axis!r} must be {{key: <dotted key>, values: [...]}} or {{<label>: {{<dotted key>: value}}}}; "
        f"got {spec!r}."
    )


def _load_config(path: Path) -> dict[str, Any]:
    """A LightningCLI YAML with ``model:``/``data:`` given as file names resolved and inlined."""
    config = yaml.safe_load(path.read_text()) or {}
    for key in ("model", "data"):
        if isinstance(config.get(key), str) and config[key].endswith((".yaml", ".yml")):
            config[key] = yaml.safe_load((path.parent / config[key]).read_text())
    return config


def _label(value: Any) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, list | dict) else str(value)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text)[:40]

"""Strength schedules: one attribute of a synthesizer as a function of the training epoch.

A :class:`StrengthSchedule` names an attribute by its dotted path from the synthesizer
(``blend.opacity`` of a blended synthesizer, ``source.sdas_strength`` of SDAS sampled on
the fly, ``synthesizers.0.blend.opacity`` inside a ``OneOf``/``DefaultMix``) and moves it
from ``start`` to ``end`` over ``epochs`` epochs, linearly, along a half cosine, or in
steps. A value is a number or a ``(low, high)`` range (a number given for a range
attribute is the range ``(v, v)``). The value of epoch ``e`` depends on ``e`` alone, so a
schedule evaluated in a DataLoader worker from the epoch its sampler hands over gives
the same value as the main process.

Only attributes that the synthesizer draws its parameters from can be scheduled (the
ranges parts sample with the per-sample generators): the drawn values land in
``params``, so ``apply(images, params)`` replays an anomaly of any epoch exactly. An
attribute read at render time (a mask threshold) is refused, because a replay of an
earlier epoch would then use the current value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from anomalysynth.synth.base import Synthesizer
from anomalysynth.synth.parts import SynthesisPart

__all__ = [
    "SCHEDULES",
    "StrengthSchedule",
    "as_value",
    "check_schedulable",
    "get_attribute",
    "numeric_attributes",
    "set_attribute",
]

SCHEDULES = ("linear", "cosine", "step")
Value = float | tuple[float, float]


def as_value(name: str, value: object) -> Value:
    """``value`` as a float or a ``(low, high)`` float pair, or ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number or a (low, high) pair; got {value!r}.")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"`{name}` must be finite; got {value!r}.")
        return float(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        low, high = (as_value(name, v) for v in value)
        if not isinstance(low, float) or not isinstance(high, float) or low > high:
            raise ValueError(f"`{name}` must be a number or a (low, high) pair with low <= high; got {value!r}.")
        return (low, high)
    raise ValueError(f"`{name}` must be a number or a (low, high) pair; got {value!r}.")


@dataclass(frozen=True)
class StrengthSchedule:
    """``attribute`` moved from ``start`` (epoch 0) to ``end`` (epoch ``epochs - 1`` and later).

    With ``t = min(epoch / (epochs - 1), 1)`` (``t = 1`` when ``epochs == 1``):

    * ``linear``: ``start + (end - start) t``;
    * ``cosine``: ``end + (start - end) (1 + cos(pi t)) / 2`` (slow at both ends);
    * ``step``: ``start + (end - start) k / n`` after the ``k``-th of ``n`` milestones;
      the milestones are ``milestones`` when given, else ``steps - 1`` equal divisions
      of ``epochs`` (``steps`` levels; ``steps=2`` switches at ``epochs // 2``).

    Ranges move both ends. :meth:`apply` sets the value on a synthesizer.
    """

    attribute: str
    start: Value
    end: Value
    epochs: int
    schedule: str = "linear"
    steps: int = 2
    milestones: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise ValueError(
                f"`attribute` must be a dotted attribute name such as 'blend.opacity'; got {self.attribute!r}."
            )
        object.__setattr__(self, "start", as_value("start", self.start))
        object.__setattr__(self, "end", as_value("end", self.end))
        if isinstance(self.start, tuple) != isinstance(self.end, tuple):
            start, end = self.start, self.end
            object.__setattr__(self, "start", start if isinstance(start, tuple) else (start, start))
            object.__setattr__(self, "end", end if isinstance(end, tuple) else (end, end))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"`schedule` must be one of {SCHEDULES}; got {self.schedule!r}.")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"`epochs` must be an integer >= 1; got {self.epochs!r}.")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 2:
            raise ValueError(f"`steps` must be an integer >= 2; got {self.steps!r}.")
        if self.milestones is not None:
            milestones = tuple(int(m) for m in self.milestones)
            if not milestones or any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
                raise ValueError(f"`milestones` must be increasing epochs >= 1; got {self.milestones!r}.")
            object.__setattr__(self, "milestones", milestones)

    def fraction(self, epoch: int) -> float:
        """How far along the schedule ``epoch`` is, in [0, 1]."""
        epoch = max(int(epoch), 0)
        if self.schedule == "step":
            milestones = self.milestones or tuple(math.ceil(k * self.epochs / self.steps) for k in range(1, self.steps))
            return sum(epoch >= m for m in milestones) / len(milestones)
        t = 1.0 if self.epochs == 1 else min(epoch / (self.epochs - 1), 1.0)
        if self.schedule == "cosine":
            return (1.0 - math.cos(math.pi * t)) / 2.0
        return t

    def value(self, epoch: int) -> Value:
        """The scheduled value at ``epoch``."""
        f = self.fraction(epoch)
        if isinstance(self.start, tuple) and isinstance(self.end, tuple):
            low = self.start[0] + (self.end[0] - self.start[0]) * f
            high = self.start[1] + (self.end[1] - self.start[1]) * f
            return (low, max(low, high))
        assert isinstance(self.start, float) and isinstance(self.end, float)
        return self.start + (self.end - self.start) * f

    def apply(self, synthesizer: Synthesizer, epoch: int) -> Value:
        """Set the value of ``epoch`` on ``synthesizer``; returns what was set (a number for a range: the range)."""
        return set_attribute(synthesizer, self.attribute, self.value(epoch))


# ---------------------------------------------------------------------- attribute paths
def _children(obj: object) -> list[tuple[str, object]]:
    """The named sub-objects a path may step into: parts, synthesizers, lists of them."""
    if isinstance(obj, torch.nn.ModuleList | list | tuple):
        return [(str(i), v) for i, v in enumerate(obj)]
    items = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
    if isinstance(obj, torch.nn.Module):
        items.update(obj._modules)
    return [(k, v) for k, v in items.items() if not k.startswith("_")]


def _is_node(value: object) -> bool:
    if isinstance(value, Synthesizer | SynthesisPart):
        return True
    return isinstance(value, torch.nn.ModuleList | list | tuple) and any(_is_node(v) for v in value)


def _is_number(value: object) -> bool:
    return isinstance(value, float) or (
        isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, float) for v in value)
    )


def numeric_attributes(synthesizer: object, prefix: str = "") -> list[str]:
    """Dotted paths of the float and float-range attributes under ``synthesizer`` (its parts included).

    The candidates of a schedule; records of a part's value (a preset's ``opacity``) and
    the anomaly ratio are left out. Which of them the synthesizer draws its parameters
    from (what :func:`check_schedulable` requires) is up to each part.
    """
    found: list[str] = []
    for name, value in _children(synthesizer):
        path = f"{prefix}{name}"
        if _is_node(value):
            found += numeric_attributes(value, f"{path}.")
        elif _is_number(value) and not name.endswith("anomaly_ratio") and _recorded_by(synthesizer, name) is None:
            found.append(path)
    return found


def _recorded_by(owner: object, name: str) -> str | None:
    """The child part whose ``name`` the attribute ``owner.name`` records (same value), if any."""
    value = getattr(owner, name, None)
    for part_name, part in _children(owner):
        if _is_node(part) and not isinstance(part, list | tuple) and getattr(part, name, None) == value:
            return part_name
    return None


def _walk(root: object, path: str) -> list[tuple[object, str]]:
    """``[(owner, name), ...]`` along ``path``: the last pair holds the attribute."""
    chain: list[tuple[object, str]] = []
    node = root
    parts = path.split(".")
    for depth, name in enumerate(parts):
        children = dict(_children(node))
        if name not in children:
            where = ".".join(parts[:depth]) or type(root).__name__
            raise ValueError(
                f"{type(root).__name__} has no attribute {path!r} ({where} has no {name!r}); "
                f"its numeric attributes: {numeric_attributes(root) or 'none'}."
            )
        chain.append((node, name))
        node = children[name]
    return chain


def get_attribute(synthesizer: object, path: str) -> Any:
    """The value at the dotted ``path`` (list entries by index: ``synthesizers.0.blend.opacity``)."""
    owner, name = _walk(synthesizer, path)[-1]
    return dict(_children(owner))[name]


def set_attribute(synthesizer: object, path: str, value: Value) -> Value:
    """Set the float or range at ``path`` and return it; records of it higher up (a preset's ``opacity``) follow."""
    chain = _walk(synthesizer, path)
    owner, name = chain[-1]
    old = dict(_children(owner))[name]
    new = value if isinstance(old, tuple | list) == isinstance(value, tuple) else _coerce(path, old, value)
    setattr(owner, name, new)
    # presets keep their constructor arguments as attributes (config() reads them): keep them true
    for ancestor, _ in chain[:-1]:
        if not isinstance(ancestor, list | tuple | torch.nn.ModuleList) and getattr(ancestor, name, None) == old:
            setattr(ancestor, name, new)
    return new


def _coerce(path: str, old: object, value: Value) -> Value:
    if isinstance(old, tuple | list) and isinstance(value, float):
        return (value, value)
    raise ValueError(f"{path!r} holds a single number ({old!r}); a (low, high) range cannot be set on it.")


def check_schedulable(synthesizer: Synthesizer, schedule: StrengthSchedule) -> None:
    """ValueError unless ``schedule.attribute`` is a float (range) the synthesizer draws its parameters from.

    The check draws the parameters of a small probe image with the start and the end
    value (same generator) and requires them to differ; the attribute is restored.
    """
    path = schedule.attribute
    owner, name = _walk(synthesizer, path)[-1]
    current = dict(_children(owner))[name]
    if name.endswith("anomaly_ratio"):
        raise ValueError(
            f"{path!r}: the anomaly ratio is the plug-in point's one coin (dataset, callback), not a strength."
        )
    if not _is_number(current):
        raise ValueError(
            f"{path!r} holds {current!r}, not a float or a (low, high) float range; "
            f"its numeric attributes: {numeric_attributes(synthesizer) or 'none'}."
        )
    if isinstance(current, float) and isinstance(schedule.start, tuple):
        raise ValueError(f"{path!r} holds a single number ({current!r}); give `start` and `end` as numbers.")
    part_name = _recorded_by(owner, name)
    if part_name is not None:
        raise ValueError(
            f"{path!r} records the constructor argument of {type(owner).__name__}; the value used is "
            f"{part_name}.{name}: schedule {'.'.join([*path.split('.')[:-1], part_name, name])!r}."
        )
    if schedule.value(0) == schedule.value(schedule.epochs):
        return
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    drawn = []
    try:
        for epoch in (0, schedule.epochs):
            set_attribute(synthesizer, path, schedule.value(epoch))
            drawn.append(synthesizer.sample_params(probe, torch.Generator().manual_seed(0), anomaly_ratio=1.0))
    finally:
        restored = tuple(current) if isinstance(current, list) else current
        set_attribute(synthesizer, path, restored)  # type: ignore[arg-type]  # the value read back from there
    first, last = drawn
    if first.keys() == last.keys() and all(torch.equal(first[k], last[k]) for k in first):
        raise ValueError(
            f"{path!r} does not change the parameters {type(synthesizer).__name__} draws, so the replay params "
            "would not record it (a value read at render time); schedule a range the synthesizer samples from "
            f"(its numeric attributes: {numeric_attributes(synthesizer)})."
        )

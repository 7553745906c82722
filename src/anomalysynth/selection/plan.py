"""``AFSPlan``: one anomaly-aware feature selection as a user configured it, and running it; the
protocol of models that run it in their own warm-up."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from anomalysynth.selection.afs import accumulate_afs
from anomalysynth.selection.indices import load_indices, save_indices
from anomalysynth.selection.protocol import FeatureSelectable
from anomalysynth.synth import Synthesizer

__all__ = ["AFSPlan", "RunsFeatureSelectionInWarmUp", "check_selectable"]


@dataclass(frozen=True)
class AFSPlan:
    """How to select a model's channels by AFS.

    Args:
        num_samples: anomalous triplets (A, I, M) to gather (RealNet: 1024). The
            training loader is cycled until there are this many; see
            :func:`~anomalysynth.selection.triplets.gather_triplets`.
        dims: channels kept per level (default: the model's ``afs_dims``).
        cache_path: a ``.pt`` file to read the indices from, or to write them to.
        num_batches: stop after this many batches (over all passes) even with fewer
            than ``num_samples`` triplets (quick runs); ``None``: no limit.
        synthesizer: makes an anomaly, on the model's device, from every normal image
            drawn (plain batches of normal images, and the normal samples of synthetic
            batches); without one only the batches' own synthetic samples count, and
            plain batches are refused.
        seed: seed of the synthesizer's keyed draws (``SynthesizeOnDevice``'s, so pass
            ``p`` makes the anomalies that callback makes in epoch ``p``).
    """

    num_samples: int = 1024
    dims: tuple[int, ...] | None = None
    cache_path: Path | None = None
    num_batches: int | None = None
    synthesizer: Synthesizer | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_samples", "num_batches"):
            value = getattr(self, name)
            if (value is not None or name == "num_samples") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"AFS needs an int `{name}` >= 1; got {value!r}.")
        if self.synthesizer is not None and not isinstance(self.synthesizer, Synthesizer):
            raise ValueError(
                f"AFS needs an anomalysynth Synthesizer as `synthesizer`; got {type(self.synthesizer).__name__}."
            )
        object.__setattr__(self, "seed", int(self.seed))
        if self.dims is not None:
            if any(int(d) < 1 for d in self.dims):
                raise ValueError(f"AFS needs positive `dims`; got {list(self.dims)}.")
            object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if self.cache_path is not None:
            object.__setattr__(self, "cache_path", Path(self.cache_path))

    def apply(
        self,
        model: FeatureSelectable,
        loader: Iterable[Any],
        device: torch.device | str = "cpu",
        write_cache: bool = True,
        progress: bool = True,
    ) -> bool:
        """Install a channel selection in ``model`` unless it has one; True when AFS was computed.

        A model whose ``feature_selection_done`` is true (restored from a checkpoint)
        keeps its indices; else they come from ``cache_path`` when that file exists,
        else AFS runs on ``num_samples`` triplets from ``loader`` (with the model in eval
        mode) and, when ``write_cache``, the result is written to ``cache_path``.
        """
        check_selectable(model)
        if getattr(model, "feature_selection_done", False):
            return False
        if self.cache_path is not None and self.cache_path.is_file():
            model.set_feature_selection(load_indices(self.cache_path))
            return False
        dims: Sequence[int] = self.dims or list(model.afs_dims)
        was_training = model.training if isinstance(model, nn.Module) else None
        if isinstance(model, nn.Module):
            model.eval()
        try:
            accumulator = accumulate_afs(
                model, loader, self.num_samples, device, progress, self.synthesizer, self.seed, self.num_batches
            )
        finally:
            if isinstance(model, nn.Module) and was_training is not None:
                model.train(was_training)
        if 0 < accumulator.samples < self.num_samples and self.num_batches is None:
            warnings.warn(
                f"AFS gathered {accumulator.samples} of {self.num_samples} anomalous samples: the training loader "
                "gave no more (a one-shot iterable, or a pass without synthetic samples).",
                stacklevel=2,
            )
        indices = accumulator.select(dims)
        model.set_feature_selection(indices)
        if self.cache_path is not None and write_cache:
            save_indices(self.cache_path, indices)
        return True


def check_selectable(model: object) -> None:
    """Raise a ValueError naming the first part of :class:`FeatureSelectable` that ``model`` lacks."""
    for name in ("afs_features", "set_feature_selection", "afs_dims"):
        if not hasattr(model, name):
            raise ValueError(
                f"AFS needs a model with `{name}` (see anomalysynth.selection.FeatureSelectable); "
                f"{type(model).__name__} has none."
            )


@runtime_checkable
class RunsFeatureSelectionInWarmUp(Protocol):
    """A model with its own ordered warm-up before fit that runs AFS as one of its steps.

    The AFS callback hands its plan over in ``setup`` (which Lightning calls before any
    ``on_fit_start``) instead of selecting itself; the model runs it where its warm-up
    says (RealNet: first AFS, then the feature statistics).
    """

    def request_feature_selection(self, plan: AFSPlan) -> None: ...

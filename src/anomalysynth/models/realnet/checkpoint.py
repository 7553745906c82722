"""Older RealNet checkpoints, brought up to the current state dict in one place.

Each entry names what an older checkpoint lacks and what stands in for it:

- saved before features were standardised (no ``feature_stats_done``): identity
  statistics (mean 0, std 1), marked as measured, so they are never re-measured under
  weights that were trained on raw features;
- saved before the residual was tracked (no ``residual_scale``): unit scale, marked
  as not measured (a warning says so when ``residual_weight`` > 0).

Both the model's ``load_state_dict`` and ``RealNet(init_weights=...)`` go through
:func:`upgrade_state_dict`.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import torch

__all__ = ["upgrade_state_dict"]


def upgrade_state_dict(state_dict: MutableMapping[str, Any], prefix: str, channels: Sequence[int]) -> None:
    """Fill in, in place, the entries a RealNet torch model's state dict under ``prefix`` lacks.

    ``channels``: the backbone channels of each level. A state dict that is not a
    RealNet model's (no ``selection_0``) is left alone.
    """
    if prefix + "selection_0" not in state_dict:
        return
    if prefix + "feature_stats_done" not in state_dict:
        state_dict[prefix + "feature_stats_done"] = torch.tensor(True)
        for k, c in enumerate(channels):
            state_dict.setdefault(f"{prefix}feature_mean_{k}", torch.zeros(c))
            state_dict.setdefault(f"{prefix}feature_std_{k}", torch.ones(c))
    if prefix + "residual_scale" not in state_dict:
        state_dict[prefix + "residual_scale"] = torch.ones(len(channels))
        state_dict[prefix + "residual_scale_done"] = torch.tensor(False)

"""What a model offers so that anomaly-aware feature selection (AFS) can choose its channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["FeatureSelectable"]


@runtime_checkable
class FeatureSelectable(Protocol):
    """A model whose per-level feature channels AFS can select.

    ``afs_features`` gives every channel of every level for raw (B, C, H, W) images in
    [0, 1] (the model applies its own pre-processing), ``afs_dims`` the number of
    channels to keep per level, and ``set_feature_selection`` installs the chosen
    indices (one sorted ``long`` tensor per level). A model may also have a bool
    ``feature_selection_done`` (indices already installed, e.g. restored from a
    checkpoint); without it selection always runs.
    """

    @property
    def afs_dims(self) -> Sequence[int]: ...

    def afs_features(self, images: Tensor) -> list[Tensor]: ...

    def set_feature_selection(self, indices: Sequence[Tensor]) -> None: ...

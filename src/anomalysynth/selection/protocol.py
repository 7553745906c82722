"""What a model offers so that anomaly-aware feature selection (AFS) can choose its channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    from anomalysynth.selection.plan import AFSPlan

__all__ = ["FeatureSelectable", "RunsFeatureSelectionInWarmUp"]


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


@runtime_checkable
class RunsFeatureSelectionInWarmUp(Protocol):
    """A model with its own ordered warm-up before fit that runs AFS as one of its steps.

    The AFS callback hands its plan over in ``setup`` (which Lightning calls before any
    ``on_fit_start``) instead of selecting itself; the model runs it where its warm-up
    says (RealNet: first AFS, then the feature statistics).
    """

    def request_feature_selection(self, plan: AFSPlan) -> None: ...

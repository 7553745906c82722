"""Anomaly-aware feature selection (AFS): triplet gathering, error accumulation, index storage and the
model protocol.

Used alike by the Lightning callback (:class:`~anomalysynth.callbacks.AnomalyAwareFeatureSelection`)
and by models that run AFS in their own warm-up (RealNet); it imports neither.
"""

from anomalysynth.selection.afs import AFSAccumulator, accumulate_afs, afs_channel_errors, select_channels
from anomalysynth.selection.indices import load_indices, save_indices
from anomalysynth.selection.plan import AFSPlan, RunsFeatureSelectionInWarmUp, check_selectable
from anomalysynth.selection.protocol import FeatureSelectable
from anomalysynth.selection.train_loader import train_loader
from anomalysynth.selection.triplets import Triplets, gather_triplets

__all__ = [
    "AFSAccumulator",
    "AFSPlan",
    "FeatureSelectable",
    "RunsFeatureSelectionInWarmUp",
    "Triplets",
    "accumulate_afs",
    "afs_channel_errors",
    "check_selectable",
    "gather_triplets",
    "load_indices",
    "save_indices",
    "select_channels",
    "train_loader",
]

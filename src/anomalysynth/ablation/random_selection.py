"""Random channel selection: the ablation control of Anomaly-aware Feature Selection (RealNet Table 5)."""

from __future__ import annotations

import lightning.pytorch as pl
import torch

__all__ = ["RandomFeatureSelection"]


class RandomFeatureSelection(pl.Callback):
    """Hands a RealNet ``dims[k]`` channels per level drawn uniformly (seeded), instead of AFS.

    Use it in place of ``AnomalyAwareFeatureSelection`` (a model that already has a
    selection keeps it). Needs the model's public ``set_feature_selection`` and its
    ``model.channels`` / ``model.dims``.

    Args:
        seed: seeds the draw (the same seed gives the same channels).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Draw and hand over the channels before the model's warm-up."""
        if stage != "fit" or getattr(pl_module, "feature_selection_done", False):
            return
        net = getattr(pl_module, "model", None)
        if not hasattr(pl_module, "set_feature_selection") or not hasattr(net, "channels"):
            raise ValueError(
                f"`RandomFeatureSelection` needs a RealNet-like module with `set_feature_selection`; "
                f"got {type(pl_module).__name__}."
            )
        generator = torch.Generator().manual_seed(self.seed)
        indices = [
            torch.randperm(int(c), generator=generator)[: int(d)].sort().values
            for c, d in zip(net.channels, net.dims, strict=True)  # type: ignore[union-attr]
        ]
        pl_module.set_feature_selection(indices)  # type: ignore[operator]

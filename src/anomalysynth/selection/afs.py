"""Anomaly-aware feature selection (AFS, RealNet, Zhang et al. CVPR 2024).

For each layer k and channel i, on synthetic triplets (A, I, M):
``d = (phi_ki(A) - phi_ki(I))^2``, min-max normalised per channel and sample, is
compared by MSE with the mask M resized (nearest) to the feature size; the m_k
channels with the LOWEST error respond most like the anomalies and are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.selection.protocol import FeatureSelectable
from anomalysynth.selection.triplets import gather_triplets
from anomalysynth.synth import Synthesizer

__all__ = ["AFSAccumulator", "accumulate_afs", "afs_channel_errors", "select_channels"]


def afs_channel_errors(features_anomalous: Tensor, features_normal: Tensor, mask: Tensor) -> Tensor:
    """(C,) summed AFS error of each channel over a batch.

    Args:
        features_anomalous: (B, C, h, w) phi_k(A).
        features_normal: (B, C, h, w) phi_k(I).
        mask: (B, 1, H, W) or (B, H, W) anomaly mask in [0, 1].
    """
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    d = (features_anomalous - features_normal).pow(2)
    flat = d.flatten(2)
    lo, hi = flat.amin(dim=2, keepdim=True), flat.amax(dim=2, keepdim=True)
    d = ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(d)
    target = F.interpolate(mask.float(), size=d.shape[-2:], mode="nearest")
    return (d - target).pow(2).mean(dim=(2, 3)).sum(dim=0)


def select_channels(errors: Tensor, dim: int) -> Tensor:
    """Indices (sorted) of the ``dim`` channels with the lowest error."""
    if not 0 < dim <= errors.numel():
        raise ValueError(f"Cannot select {dim} channels from a layer with {errors.numel()}.")
    return torch.sort(torch.topk(errors, dim, largest=False).indices).values


class AFSAccumulator:
    """Sums per-channel AFS errors over batches, one entry per layer."""

    def __init__(self) -> None:
        self.errors: list[Tensor] | None = None
        self.samples = 0

    def update(self, anomalous: Sequence[Tensor], normal: Sequence[Tensor], mask: Tensor) -> None:
        batch = [afs_channel_errors(a.float(), n.float(), mask).cpu() for a, n in zip(anomalous, normal, strict=True)]
        self.errors = batch if self.errors is None else [e + b for e, b in zip(self.errors, batch, strict=True)]
        self.samples += mask.shape[0]

    def select(self, dims: Sequence[int]) -> list[Tensor]:
        """Per level, the sorted indices of the ``dims[k]`` channels with the lowest summed error."""
        if self.errors is None:
            raise RuntimeError("AFS gathered no anomalous triplets: nothing to select from.")
        if len(dims) != len(self.errors):
            raise ValueError(f"AFS needs one entry of `dims` per level ({len(self.errors)}); got {list(dims)}.")
        for k, (errors, d) in enumerate(zip(self.errors, dims, strict=True)):
            if d > errors.numel():
                raise ValueError(f"`dims[{k}]` = {d} is larger than layer {k} ({errors.numel()} channels).")
        return [select_channels(e, d) for e, d in zip(self.errors, dims, strict=True)]


@torch.no_grad()
def accumulate_afs(
    model: FeatureSelectable,
    loader: Iterable[Any],
    num_samples: int = 1024,
    device: torch.device | str = "cpu",
    progress: bool = True,
    synthesizer: Synthesizer | None = None,
    seed: int = 0,
    num_batches: int | None = None,
) -> AFSAccumulator:
    """AFS errors of ``model``'s channels over ``num_samples`` anomalous triplets from ``loader``.

    The triplets (A, I, M) come from :func:`~anomalysynth.selection.triplets.gather_triplets`:
    the synthetic samples of the batches (``gt_label`` 1: A = ``image``, I = ``source_image``,
    M = ``gt_mask``) and, with a ``synthesizer``, an anomaly made on ``device`` from every
    normal image drawn; the loader is cycled as needed (at most ``num_batches`` batches
    when given). Raw images go to ``model.afs_features`` on ``device``.
    """
    accumulator = AFSAccumulator()
    with tqdm(total=num_samples, desc="AFS", unit="anomaly", disable=not progress) as bar:
        for chunk in gather_triplets(loader, num_samples, device, synthesizer, seed, num_batches):
            accumulator.update(model.afs_features(chunk.anomalous), model.afs_features(chunk.normal), chunk.mask)
            bar.update(len(chunk))
    return accumulator

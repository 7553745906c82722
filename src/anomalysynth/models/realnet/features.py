"""RealNet's features: the frozen extractor (run with folded BatchNorms), the selected
channels per level, and their standardisation by the training images' statistics.

The model owns the state (the extractor, the ``selection_k`` and ``feature_mean_k`` /
``feature_std_k`` buffers); this module holds what is done with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from anomalysynth.backbones import fold_batchnorms

__all__ = [
    "FeatureStatistics",
    "checked_selection",
    "checked_statistics",
    "default_dims",
    "extract_features",
    "standardise",
]

# RealNet keeps {256, 512, 512, 256} of WideResNet50's {256, 512, 1024, 2048} channels at strides
# 4, 8, 16, 32: as fractions of each stride's channels. Strides outside the table keep all channels.
_DIMS_FRACTION_BY_STRIDE = {4: 1.0, 8: 1.0, 16: 0.5, 32: 0.125}


def default_dims(channels: Sequence[int], strides: Sequence[int]) -> list[int]:
    """RealNet's channels kept per level, by stride, scaled to the backbone (at least 8, at most all).

    EfficientNet-Lite0 (24, 40, 112, 320 channels at strides 4, 8, 16, 32) keeps 24, 40, 56, 40.
    """
    if len(channels) != len(strides):
        raise ValueError(f"Expected one stride per level ({len(channels)}); got strides {list(strides)}.")
    return [
        min(c, max(8, round(c * _DIMS_FRACTION_BY_STRIDE.get(int(r), 1.0))))
        for c, r in zip(channels, strides, strict=True)
    ]


def extract_features(
    extractor: nn.Module, images: Tensor, folded: dict[tuple[torch.device, torch.dtype], nn.Module], fold: bool
) -> list[Tensor]:
    """All channels of every level, finest first, without gradient.

    With ``fold``, a copy of the extractor with its BatchNorms folded into the
    convolutions runs instead (same features to float rounding, about a fifth less
    time). It is kept in ``folded`` per device and dtype, built on first use and never
    while the model is traced or exported (the copy would enter the graph).
    """
    key = (images.device, images.dtype)
    if fold and (key in folded or not _tracing()):
        if key not in folded:
            folded.clear()
            folded[key] = fold_batchnorms(extractor)
        extractor = folded[key]
    with torch.no_grad():
        features = extractor(images)
    return list(features.values()) if isinstance(features, dict) else list(features)


def standardise(
    features: Sequence[Tensor], selections: Sequence[Tensor], means: Sequence[Tensor], stds: Sequence[Tensor]
) -> list[Tensor]:
    """Per level, the selected channels of (B, C_k, h, w) features, standardised: (F[:, s] - mean[s]) / std[s]."""
    selected = []
    for f, s, mean, std in zip(features, selections, means, stds, strict=True):
        m = mean.index_select(0, s).view(1, -1, 1, 1)
        sd = std.index_select(0, s).view(1, -1, 1, 1)
        selected.append((f.index_select(1, s) - m) / sd)
    return selected


def checked_selection(indices: Sequence[Tensor], dims: Sequence[int], channels: Sequence[int]) -> list[Tensor]:
    """``indices`` as ``long`` tensors, after checking there are ``dims[k]`` of them in [0, channels[k]) per level."""
    if len(indices) != len(dims):
        raise ValueError(f"Expected {len(dims)} index tensors; got {len(indices)}.")
    checked = []
    for k, (index, d, c) in enumerate(zip(indices, dims, channels, strict=True)):
        index = torch.as_tensor(index, dtype=torch.long)
        if index.shape != (d,) or int(index.min()) < 0 or int(index.max()) >= c:
            raise ValueError(f"Level {k}: expected {d} channel indices in [0, {c}); got {tuple(index.shape)}.")
        checked.append(index)
    return checked


def checked_statistics(
    means: Sequence[Tensor], stds: Sequence[Tensor], channels: Sequence[int]
) -> tuple[list[Tensor], list[Tensor]]:
    """Flattened per-channel means and stds after checking their count per level and that every std is positive."""
    if len(means) != len(channels) or len(stds) != len(channels):
        raise ValueError(f"Expected {len(channels)} mean and std tensors; got {len(means)} and {len(stds)}.")
    checked_means, checked_stds = [], []
    for k, (mean, std, c) in enumerate(zip(means, stds, channels, strict=True)):
        mean, std = torch.as_tensor(mean).flatten(), torch.as_tensor(std).flatten()
        if mean.shape != (c,) or std.shape != (c,) or not bool((std > 0).all()):
            raise ValueError(f"Level {k}: expected {c} means and {c} positive stds; got {mean.shape}, {std.shape}.")
        checked_means.append(mean)
        checked_stds.append(std)
    return checked_means, checked_stds


class FeatureStatistics:
    """Per-level, per-channel mean and std of feature batches, accumulated in float64."""

    def __init__(self) -> None:
        self.sums: list[Tensor] = []
        self.squares: list[Tensor] = []
        self.counts: list[int] = []

    def update(self, features: Iterable[Tensor]) -> None:
        """Add one batch: per level (B, C_k, h, w)."""
        for k, f in enumerate(features):
            f = f.double()
            if k == len(self.sums):
                self.sums.append(torch.zeros(f.shape[1], dtype=torch.float64, device=f.device))
                self.squares.append(torch.zeros_like(self.sums[k]))
                self.counts.append(0)
            self.sums[k] += f.sum(dim=(0, 2, 3))
            self.squares[k] += f.pow(2).sum(dim=(0, 2, 3))
            self.counts[k] += f.shape[0] * f.shape[2] * f.shape[3]

    def result(self) -> tuple[list[Tensor], list[Tensor]]:
        """float32 means and stds per level; a constant channel keeps std 1 (dividing would blow it up)."""
        if not self.counts:
            raise ValueError("No feature batches were seen: nothing to measure statistics on.")
        means = [t / n for t, n in zip(self.sums, self.counts, strict=True)]
        stds = []
        for q, n, m in zip(self.squares, self.counts, means, strict=True):
            std = (q / n - m.pow(2)).clamp_min(0).sqrt()
            stds.append(torch.where(std > 1e-6, std, torch.ones_like(std)))
        return [m.float() for m in means], [v.float() for v in stds]


def _tracing() -> bool:
    """True while torch.jit / torch.onnx / torch.compile trace the model: build no copies then."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())

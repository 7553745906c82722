"""``AFSPadim``: anomalib's PaDiM whose random channel subset is chosen by AFS instead.

It shows that :class:`~anomalysynth.callbacks.AnomalyAwareFeatureSelection` works
with any module that implements its small protocol. PaDiM's Gaussian model is
fitted on the clean images only (``source_image`` when the batch has it), and its
covariances are inverted by Cholesky in float64 (:class:`SPDGaussian`) rather than by
anomalib's ``torch.linalg.inv``, whose batched LU races in oneMKL with more than one
thread for matrices past about 150 channels (pytorch#142815).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from anomalib.models import Padim
from anomalib.models.components.stats import MultiVariateGaussian
from torch import Tensor

from anomalysynth.models.preprocess import pre_process
from anomalysynth.models.realnet.gaussian import regularised_precision

__all__ = ["AFSPadim", "SPDGaussian"]


class SPDGaussian(MultiVariateGaussian):
    """anomalib's per-position Gaussian (the same mean, covariance, 0.01 + 1e-5 on the
    diagonal, and the same ``mean`` / ``inv_covariance`` buffers), accumulated in float64
    and inverted by Cholesky: the regularised covariance is symmetric positive definite.

    Args:
        chunk: positions per step (bounds the float64 working memory).
    """

    def __init__(self, chunk: int = 256) -> None:
        super().__init__()
        self.chunk = int(chunk)

    @torch.no_grad()
    def forward(self, embedding: Tensor) -> list[Tensor]:
        if embedding.ndim != 4 or embedding.shape[0] < 2:
            raise ValueError(f"Expected (B, C, H, W) embeddings of at least 2 images; got {tuple(embedding.shape)}.")
        device = embedding.device
        batch, channels, height, width = embedding.shape
        vectors = embedding.reshape(batch, channels, height * width)
        self.mean = vectors.mean(dim=0)
        inverses = []
        for start in range(0, height * width, self.chunk):
            part = vectors[:, :, start : start + self.chunk].cpu().double().permute(2, 0, 1)  # (P, B, C)
            inverses.append(regularised_precision(part, 0.01 + 1e-5).float())
        self.inv_covariance = torch.cat(inverses).to(device)
        return [self.mean, self.inv_covariance]


class AFSPadim(Padim):
    """PaDiM with AFS-selected channels.

    Args:
        backbone: timm name (default: the offline EfficientNet-Lite0).
        layers: feature layers, finest first.
        n_features: channels kept in total (default 30 % of the concatenated channels),
            split over the layers in proportion to their channels.
        **kwargs: any other ``Padim`` argument (pre/post-processor, evaluator, ...).
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0.offline_in1k",
        layers: Sequence[str] = ("blocks.1", "blocks.2", "blocks.4"),
        n_features: int | None = None,
        **kwargs: Any,
    ) -> None:
        from anomalib.models.components import TimmFeatureExtractor

        probe = TimmFeatureExtractor(backbone, layers=list(layers), pre_trained=False)
        total = sum(probe.out_dims)
        super().__init__(
            backbone=backbone,
            layers=list(layers),
            pre_trained=True,
            n_features=n_features or max(len(layers), round(0.3 * total)),
            **kwargs,
        )
        self.model.gaussian = SPDGaussian()
        self.register_buffer("afs_done", torch.tensor(False))

    @property
    def afs_dims(self) -> list[int]:
        """``n_features`` split over the layers in proportion to their channels."""
        dims = self.model.feature_extractor.out_dims
        total, keep = sum(dims), int(self.model.n_features or 0)
        split = [max(1, round(keep * d / total)) for d in dims]
        split[-1] = keep - sum(split[:-1])
        return split

    def afs_features(self, images: Tensor) -> list[Tensor]:
        with torch.no_grad():
            features = self.model.feature_extractor(pre_process(self, images))
        return [features[layer] for layer in self.model.layers]

    def set_feature_selection(self, indices: Sequence[Tensor]) -> None:
        offsets = torch.tensor([0, *self.model.feature_extractor.out_dims]).cumsum(0)
        idx = torch.cat([torch.as_tensor(i).cpu() + offsets[k] for k, i in enumerate(indices)])
        if idx.numel() != self.model.n_features:
            raise ValueError(f"AFS selected {idx.numel()} channels; PaDiM keeps {self.model.n_features}.")
        self.model.idx = torch.sort(idx).values.to(self.model.idx.device)
        self.afs_done.fill_(True)  # type: ignore[operator]

    @property
    def feature_selection_done(self) -> bool:
        return bool(self.afs_done)

    def training_step(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        """Collect embeddings of the clean images only (the model stores them in its memory bank)."""
        source = getattr(batch, "source_image", None)
        if source is None:
            return super().training_step(batch, *args, **kwargs)
        self.model(pre_process(self, source, size=batch.image.shape[-2:]))
        return torch.tensor(0.0, requires_grad=True, device=self.device)

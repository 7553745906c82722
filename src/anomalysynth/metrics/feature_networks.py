"""Feature networks of the distribution metrics: pooled features (FID, KID) and class logits (IS).

Every network has a ``name`` that goes into the metric names it produces
(``fid_effnet``, ``is_inception``), so numbers from different networks are never
reported under one name:

* :class:`EfficientNetFeatures` (``effnet``, the offline default): EfficientNet-Lite0
  with its ImageNet weights (``efficientnet_lite0.offline_in1k``), 1280 pooled
  features and its 1000-class head.
* :class:`InceptionFeatures` (``inception``): the FID/IS Inception-v3 of
  torch-fidelity and torchmetrics, from a user weights file
  (``pt_inception-2015-12-05-6726825d.pth``); 2048 pool features and 1008 logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.backbones import create_timm_model, fold_batchnorms

__all__ = [
    "EfficientNetFeatures",
    "FeatureNetwork",
    "ImageFeatures",
    "InceptionFeatures",
    "create_feature_network",
    "validate_image_batch",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ImageFeatures:
    """Pooled features (N, D) and class logits (N, K) of a set of images, float64 on the CPU."""

    features: Tensor
    logits: Tensor

    def __len__(self) -> int:
        return int(self.features.shape[0])


class FeatureNetwork(torch.nn.Module):
    """Maps (B, C, H, W) images in [0, 1] to (features (B, D), logits (B, K))."""

    name: str = "network"
    #: appended to every metric name computed in this network's space ("" only for the papers' network)
    metric_suffix: str = "_network"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def extract(self, images: Tensor, batch_size: int = 32) -> ImageFeatures:
        """Features and logits of ``images`` (N, C, H, W) in [0, 1], computed in batches."""
        images = validate_image_batch(images, "images")
        device = next(iter(self.parameters()), torch.empty(0)).device
        feats, logits = [], []
        for start in range(0, images.shape[0], batch_size):
            f, lg = self(images[start : start + batch_size].to(device))
            feats.append(f.double().cpu())
            logits.append(lg.double().cpu())
        return ImageFeatures(torch.cat(feats), torch.cat(logits))


class EfficientNetFeatures(FeatureNetwork):
    """EfficientNet-Lite0 (offline ImageNet weights): 1280 pooled features and 1000 logits.

    Args:
        backbone: a timm EfficientNet name; the default has offline weights.
        weights: a state-dict file for a backbone without offline weights.
        input_size: images are resized (bilinear, antialiased) to this square size.
    """

    name = "effnet"
    metric_suffix = "_effnet"
    net: Any
    mean: Tensor
    std: Tensor

    def __init__(
        self, backbone: str = "efficientnet_lite0.offline_in1k", weights: str | None = None, input_size: int = 224
    ) -> None:
        super().__init__()
        if input_size < 32:
            raise ValueError(f"`input_size` must be >= 32; got {input_size}.")
        self.input_size = int(input_size)
        self.net = fold_batchnorms(create_timm_model(backbone, weights=weights).eval().requires_grad_(False))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.num_features = int(self.net.num_features)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = _rgb(images)
        x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        pooled = self.net.forward_head(self.net.forward_features(x), pre_logits=True)
        return pooled, self.net.get_classifier()(pooled)


class InceptionFeatures(FeatureNetwork):
    """The FID Inception-v3 (torch-fidelity's port of the TensorFlow graph) from a local file.

    Needs ``pip install torch-fidelity`` and the weights file that torch-fidelity
    would download (``pt_inception-2015-12-05-6726825d.pth``); nothing is downloaded.
    Features are the 2048 pool features, logits the 1008 unbiased logits (as
    torchmetrics' FID and IS use them).
    """

    name = "inception"
    metric_suffix = ""  # the papers' network: the papers' names
    net: Any

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights file {str(path)!r} does not exist.")
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as err:
            raise ImportError(
                "The Inception feature network needs torch-fidelity: `pip install torch-fidelity` "
                "(or `pip install anomalysynth[inception]`)."
            ) from err
        self.net = FeatureExtractorInceptionV3(
            name="inception-v3-compat",
            features_list=["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(path),
        ).eval()
        self.num_features = 2048

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = (_rgb(images).clamp(0, 1) * 255).round().to(torch.uint8)  # its input contract: uint8 RGB
        pooled, logits = self.net(x)
        return pooled, logits


def create_feature_network(name: str = "effnet", weights: str | Path | None = None, **kwargs: object) -> FeatureNetwork:
    """``"effnet"`` (offline default; ``kwargs`` such as ``input_size`` go to it) or ``"inception"`` (``weights``)."""
    if name == "effnet":
        return EfficientNetFeatures(weights=None if weights is None else str(weights), **kwargs)  # type: ignore[arg-type]
    if name == "inception":
        if weights is None:
            raise ValueError("The Inception feature network needs `weights` (a local torch-fidelity weights file).")
        return InceptionFeatures(weights)
    raise ValueError(f"Unknown feature network {name!r}; expected 'effnet' or 'inception'.")


def validate_image_batch(images: Tensor, what: str) -> Tensor:
    """(N, C, H, W) float in [0, 1] with C in {1, 3}, else a ValueError naming ``what``."""
    if not isinstance(images, Tensor):
        raise ValueError(f"`{what}` must be a (N, C, H, W) float tensor; got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"`{what}`: expected (N, C, H, W) with C in (1, 3); got {tuple(images.shape)}.")
    if not images.is_floating_point():
        raise ValueError(f"`{what}`: expected a float tensor in [0, 1]; got {images.dtype}.")
    if images.numel() and (float(images.min()) < -1e-6 or float(images.max()) > 1 + 1e-6):
        raise ValueError(
            f"`{what}`: expected values in [0, 1]; got [{float(images.min()):.3g}, {float(images.max()):.3g}]."
        )
    return images


def _rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images

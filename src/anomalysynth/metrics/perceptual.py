"""Perceptual distances of the LPIPS form (Zhang et al., 2018) for IC-LPIPS.

``d(x, y) = sum_l mean_hw sum_c w_lc (f_l(x) - f_l(y))^2`` with ``f_l`` the
channel-unit-normalised activations of level ``l``:

* :class:`EfficientNetPerceptual` (``effnet``, offline default): the five feature
  levels of the offline EfficientNet-Lite0 with unit weights ``w = 1`` (the
  unlearned "baseline" form of LPIPS, in another network's space);
* :class:`LpipsAlexNet` (``lpips``, the papers' distance): torchmetrics' LPIPS
  (AlexNet, learned linear weights shipped with torchmetrics) with the AlexNet
  ImageNet weights read from a user file (torchvision's ``alexnet-owt-7be5be79.pth``).

Images are embedded once (:meth:`PerceptualDistance.embed`) and pairs compared
from the embeddings, so IC-LPIPS costs one network pass per image. With ``mask``
the spatial mean runs over the masked pixels only (the mask-restricted variant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.backbones import create_timm_model, fold_batchnorms
from anomalysynth.metrics.feature_networks import validate_image_batch

__all__ = ["EfficientNetPerceptual", "LpipsAlexNet", "PerceptualDistance", "create_perceptual_distance"]

Embedding = list[Tensor]  # one (N, C_l, H_l, W_l) unit-normalised map per level


class PerceptualDistance(torch.nn.Module):
    """LPIPS-form distance: ``embed`` images once, then ``distance`` between embedded pairs."""

    name: str = "perceptual"
    #: appended to the metric names ("" only for the papers' LPIPS)
    metric_suffix: str = "_perceptual"
    #: (C_l,) channel weights per level
    level_weights: list[Tensor]

    def levels(self, images: Tensor) -> list[Tensor]:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, images: Tensor, batch_size: int = 32) -> Embedding:
        """Unit-normalised level activations of (N, C, H, W) images in [0, 1] (CPU float32)."""
        images = validate_image_batch(images, "images")
        parts: list[list[Tensor]] = []
        for start in range(0, images.shape[0], batch_size):
            maps = self.levels(images[start : start + batch_size])
            parts.append([m / (m.square().sum(dim=1, keepdim=True).sqrt() + 1e-10) for m in maps])
        return [torch.cat([p[i] for p in parts]).float().cpu() for i in range(len(parts[0]))]

    def distance(self, a: Embedding, b: Embedding, mask: Tensor | None = None) -> Tensor:
        """(B,) distances between aligned embedded pairs; ``mask`` (B, 1, H, W) restricts the mean."""
        total = torch.zeros(a[0].shape[0], dtype=torch.float64)
        for weight, fa, fb in zip(self.level_weights, a, b, strict=True):
            per_pixel = ((fa - fb).square() * weight.view(1, -1, 1, 1)).sum(dim=1, keepdim=True).double()
            if mask is None:
                total += per_pixel.mean(dim=(1, 2, 3))
            else:
                m = F.interpolate(mask.double(), size=per_pixel.shape[-2:], mode="area")
                total += (per_pixel * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3)).clamp_min(1e-12)
        return total


class EfficientNetPerceptual(PerceptualDistance):
    """Unit-weight LPIPS form on the five levels of the offline EfficientNet-Lite0."""

    name = "effnet"
    metric_suffix = "_effnet"
    net: Any
    mean: Tensor
    std: Tensor

    def __init__(self, backbone: str = "efficientnet_lite0.offline_in1k", weights: str | None = None) -> None:
        super().__init__()
        net = create_timm_model(backbone, weights=weights, features_only=True).eval().requires_grad_(False)
        self.net = fold_batchnorms(net)
        self.level_weights = [torch.ones(c) for c in self.net.feature_info.channels()]
        self.register_buffer("mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)

    def levels(self, images: Tensor) -> list[Tensor]:
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        return list(self.net((x - self.mean) / self.std))


class LpipsAlexNet(PerceptualDistance):
    """LPIPS (AlexNet, learned weights from torchmetrics) with the AlexNet weights from a user file."""

    name = "lpips"
    metric_suffix = ""  # the papers' distance: the papers' name (ic_lpips)
    lpips: Any

    def __init__(self, alexnet_weights: str | Path) -> None:
        super().__init__()
        from torchmetrics.functional.image.lpips import _LPIPS

        path = Path(alexnet_weights)
        if not path.is_file():
            raise FileNotFoundError(f"AlexNet weights file {str(path)!r} does not exist.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        # torchvision's `features.<i>.*` -> torchmetrics' `slice<k>.<i>.*` (slices 0-1, 2-4, 5-7, 8-9, 10-11)
        slices = {0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5}
        renamed = {}
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] == "features" and int(parts[1]) in slices:
                renamed[f"slice{slices[int(parts[1])]}.{'.'.join(parts[1:])}"] = value
        self.lpips = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
        missing, _ = self.lpips.net.load_state_dict(renamed, strict=False)
        if missing:
            raise ValueError(f"{path} is not a torchvision AlexNet state dict: missing {missing[:3]}...")
        self.level_weights = [lin.model[-1].weight.detach().flatten().clone() for lin in self.lpips.lins]

    def levels(self, images: Tensor) -> list[Tensor]:
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        outs = self.lpips.net(self.lpips.scaling_layer(2 * x - 1))
        return list(outs)


def create_perceptual_distance(name: str = "effnet", weights: str | Path | None = None) -> PerceptualDistance:
    """``"effnet"`` (offline default) or ``"lpips"`` (needs the AlexNet ``weights`` file)."""
    if name == "effnet":
        return EfficientNetPerceptual(weights=None if weights is None else str(weights))
    if name == "lpips":
        if weights is None:
            raise ValueError("LPIPS needs `weights`: a local torchvision AlexNet ImageNet state dict.")
        return LpipsAlexNet(weights)
    raise ValueError(f"Unknown perceptual distance {name!r}; expected 'effnet' or 'lpips'.")

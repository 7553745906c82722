"""Perceptual loss: L1 between frozen ImageNet features of two images.

AnomalyHybrid trains with pix2pixHD's VGG19 loss (relu1_1 ... relu5_1, weights 1/32,
1/16, 1/8, 1/4, 1). No VGG19 weights can be fetched here, so the default is the
offline EfficientNet-Lite0 (``efficientnet_lite0.offline_in1k``, its first four
feature stages, the same increasing weights); pass ``backbone="vgg19"`` with a local
torchvision ``vgg19`` state dict (``vgg19-dcbb9e9d.pth``) for the paper's loss.
``backbone="none"`` turns the term off (tests, ablations).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PERCEPTUAL_BACKBONES", "PerceptualLoss"]

PERCEPTUAL_BACKBONES = ("efficientnet_lite0", "vgg19", "none")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision vgg19 ``features`` indices ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
_VGG_SLICES = (2, 7, 12, 21, 30)


class PerceptualLoss(nn.Module):
    """``sum_k w_k * L1(phi_k(x), phi_k(y))`` over frozen feature stages ``phi_k``.

    Args:
        backbone: ``"efficientnet_lite0"`` (offline weights, default), ``"vgg19"``
            (needs ``weights``) or ``"none"`` (the loss is 0).
        weights: local torchvision VGG19 state dict for ``backbone="vgg19"``.

    Inputs are (B, C, H, W) in [0, 1], C = 1 or 3 (grey is repeated to RGB).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", weights: str | Path | None = None) -> None:
        super().__init__()
        if backbone not in PERCEPTUAL_BACKBONES:
            raise ValueError(f"`backbone` must be one of {PERCEPTUAL_BACKBONES}; got {backbone!r}.")
        self.backbone = backbone
        self.stages = nn.ModuleList()
        self.stage_weights: tuple[float, ...] = ()
        if backbone == "efficientnet_lite0":
            self._build_efficientnet(weights)
        elif backbone == "vgg19":
            self._build_vgg19(weights)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PerceptualLoss:
        """The feature network stays in eval mode (frozen BatchNorm statistics)."""
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.backbone == "none":
            return x.new_zeros(())
        fx, fy = self._features(x), self._features(y)
        terms = [w * F.l1_loss(a, b.detach()) for w, a, b in zip(self.stage_weights, fx, fy, strict=True)]
        return torch.stack(terms).sum()

    def _features(self, x: Tensor) -> list[Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        h = (x - mean) / std
        out = []
        if self.backbone == "efficientnet_lite0":
            return list(self.stages[0](h))
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def _build_efficientnet(self, weights: str | Path | None) -> None:
        from anomalysynth.backbones import create_timm_model

        name = "efficientnet_lite0" if weights is not None else "efficientnet_lite0.offline_in1k"
        self.stages.append(create_timm_model(name, weights=weights, features_only=True, out_indices=(0, 1, 2, 3)))
        self.stage_weights = (1 / 8, 1 / 4, 1 / 2, 1.0)

    def _build_vgg19(self, weights: str | Path | None) -> None:
        from torchvision.models import vgg19

        if weights is None:
            raise ValueError(
                "The VGG19 perceptual loss needs a local weights file (nothing is downloaded): pass "
                "perceptual_weights=<torchvision vgg19 state dict, e.g. vgg19-dcbb9e9d.pth>, or use "
                "perceptual_backbone='efficientnet_lite0' (offline weights, the default)."
            )
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"VGG19 weights file {str(path)!r} does not exist.")
        model = vgg19(weights=None)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        start = 0
        for end in _VGG_SLICES:
            self.stages.append(model.features[start:end])
            start = end
        self.stage_weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

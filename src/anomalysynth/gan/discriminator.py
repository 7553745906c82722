"""pix2pixHD's multi-scale conditional PatchGAN discriminator.

Each scale is an N-layer PatchGAN over ``[condition, image]`` (the target depth and
edges next to a real or generated image); scale ``k`` sees the input average-pooled
``k`` times. Every scale returns its intermediate features too, for the feature
matching loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiscaleDiscriminator", "PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """An N-layer PatchGAN: 4x4 convolutions, stride 2 for ``num_layers`` layers, then stride 1.

    Args:
        in_channels: condition channels plus image channels.
        width: channels of the first layer (pix2pixHD ``ndf``: 64).
        num_layers: stride-2 layers (pix2pixHD: 3).
    """

    def __init__(self, in_channels: int, width: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, width, 4, stride=2, padding=2), nn.LeakyReLU(0.2, inplace=True))
        ]
        channels = width
        for n in range(1, num_layers + 1):
            out = min(channels * 2, width * 8)
            stride = 2 if n < num_layers else 1
            layers.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 4, stride=stride, padding=2),
                    nn.InstanceNorm2d(out),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=2))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Every layer's output; the last is the (B, 1, h, w) patch logit map."""
        features = []
        for layer in self.layers:
            x = layer(x)
            features.append(x)
        return features


class MultiscaleDiscriminator(nn.Module):
    """``num_scales`` PatchGANs on the input at full, half, quarter ... resolution.

    Args:
        condition_channels: channels of the condition (2: depth and edges).
        image_channels: channels of the judged image.
        width, num_layers: see :class:`PatchDiscriminator`.
        num_scales: discriminators (pix2pixHD: 2 or 3).
    """

    def __init__(
        self,
        condition_channels: int = 2,
        image_channels: int = 3,
        width: int = 64,
        num_layers: int = 3,
        num_scales: int = 2,
    ) -> None:
        super().__init__()
        if num_scales < 1 or num_layers < 1:
            raise ValueError(f"Expected num_scales >= 1 and num_layers >= 1; got {num_scales}, {num_layers}.")
        self.condition_channels = condition_channels
        self.image_channels = image_channels
        self.scales = nn.ModuleList(
            PatchDiscriminator(condition_channels + image_channels, width, num_layers) for _ in range(num_scales)
        )

    def forward(self, condition: Tensor, image: Tensor) -> list[list[Tensor]]:
        """Per scale, the list of layer outputs (the last one the logits)."""
        if condition.shape[1] != self.condition_channels or image.shape[1] != self.image_channels:
            raise ValueError(
                f"Expected a condition with {self.condition_channels} and an image with {self.image_channels} "
                f"channels; got {condition.shape[1]} and {image.shape[1]}."
            )
        x = torch.cat([condition * 2 - 1, image * 2 - 1], dim=1)
        out = []
        for k, scale in enumerate(self.scales):
            if k:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(scale(x))
        return out

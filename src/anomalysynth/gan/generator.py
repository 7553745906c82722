"""AnomalyHybrid's generator: one pix2pixHD-style encoder, two fusion decoders.

The encoder reads the concatenated conditions ``[C_in, D, E]`` (reference colour
image, target depth, target edges): a 7x7 stem, ``num_downsampling`` stride-2
convolutions (four scales with the default 3) and ``num_resnet_blocks``
ResnetBlocks at the coarsest scale, as pix2pixHD's global generator.

Two decoders read the shared code: AHD is depth-controlled, AHE edge-controlled.
Each decoder sees its own control map again at every scale (concatenated, resized),
so one follows the depth map and the other the edge map. Each decoder has two
heads (Zhao 2025, Sec. 3):

* the anomaly source ``A_gen`` (tanh, mapped to [0, 1]),
* the fusion map ``M_gen`` (sigmoid, one channel),

and outputs ``M_gen * A_gen + (1 - M_gen) * C_in``: where the fusion map is 0 the
reference content passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AnomalyHybridGenerator", "DecoderOutput", "ResnetBlock", "fuse"]

DECODERS = ("depth", "edge")


def fuse(anomaly: Tensor, fusion: Tensor, content: Tensor) -> Tensor:
    """``M * A + (1 - M) * C``: (B, C, H, W), (B, 1, H, W), (B, C, H, W) -> (B, C, H, W)."""
    return torch.lerp(content, anomaly, fusion)


@dataclass
class DecoderOutput:
    """One decoder's result: ``image = fuse(anomaly, fusion, content)``.

    Attributes:
        image: (B, C, H, W) in [0, 1].
        anomaly: (B, C, H, W) in [0, 1], the anomaly source ``A_gen``.
        fusion: (B, 1, H, W) in [0, 1], the fusion map ``M_gen``.
    """

    image: Tensor
    anomaly: Tensor
    fusion: Tensor


class ResnetBlock(nn.Module):
    """pix2pixHD's residual block: reflect-pad 3x3 conv, norm, ReLU, twice, plus the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class _FusionDecoder(nn.Module):
    """Upsampling decoder conditioned on one control map at every scale, with two heads."""

    def __init__(self, width: int, num_upsampling: int, image_channels: int) -> None:
        super().__init__()
        self.ups = nn.ModuleList()
        channels = width * 2**num_upsampling
        for _ in range(num_upsampling):
            self.ups.append(
                nn.Sequential(
                    nn.Conv2d(channels + 1, channels // 2, 3, padding=1, padding_mode="reflect"),
                    nn.InstanceNorm2d(channels // 2, affine=True),
                    nn.ReLU(inplace=True),
                )
            )
            channels //= 2
        self.anomaly_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels + 1, image_channels, 7))
        self.fusion_head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(channels + 1, 1, 7))

    def forward(self, code: Tensor, control: Tensor, content: Tensor) -> DecoderOutput:
        x = code
        for up in self.ups:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = up(torch.cat([x, _resized(control, x)], dim=1))
        x = torch.cat([x, control], dim=1)
        anomaly = (torch.tanh(self.anomaly_head(x)) + 1) / 2
        fusion = torch.sigmoid(self.fusion_head(x))
        return DecoderOutput(image=fuse(anomaly, fusion, content), anomaly=anomaly, fusion=fusion)


class AnomalyHybridGenerator(nn.Module):
    """G(C_in, D, E) -> AHD and AHE outputs.

    Args:
        image_channels: channels of the colour image (3, or 1 for grey data).
        width: channels of the first layer (pix2pixHD ``ngf``; 64 in the paper's lineage).
        num_downsampling: stride-2 stages (3 gives four scales); inputs must have sides
            divisible by ``2 ** num_downsampling``.
        num_resnet_blocks: ResnetBlocks at the coarsest scale (pix2pixHD: 9).

    Example:
        >>> g = AnomalyHybridGenerator(width=4, num_downsampling=2, num_resnet_blocks=1)
        >>> x = torch.rand(2, 3, 16, 16)
        >>> depth_out, edge_out = g(x, torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16))
        >>> depth_out.image.shape, edge_out.fusion.shape
        (torch.Size([2, 3, 16, 16]), torch.Size([2, 1, 16, 16]))
    """

    def __init__(
        self, image_channels: int = 3, width: int = 32, num_downsampling: int = 3, num_resnet_blocks: int = 6
    ) -> None:
        super().__init__()
        if image_channels not in (1, 3):
            raise ValueError(f"`image_channels` must be 1 or 3; got {image_channels}.")
        if width < 1 or num_downsampling < 1 or num_resnet_blocks < 0:
            raise ValueError(
                "Expected width >= 1, num_downsampling >= 1 and num_resnet_blocks >= 0; "
                f"got {width}, {num_downsampling}, {num_resnet_blocks}."
            )
        self.image_channels = image_channels
        self.num_downsampling = num_downsampling
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(image_channels + 2, width, 7),
            nn.InstanceNorm2d(width, affine=True),
            nn.ReLU(inplace=True),
        ]
        channels = width
        for _ in range(num_downsampling):
            layers += [
                nn.Conv2d(channels, channels * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(channels * 2, affine=True),
                nn.ReLU(inplace=True),
            ]
            channels *= 2
        layers += [ResnetBlock(channels) for _ in range(num_resnet_blocks)]
        self.encoder = nn.Sequential(*layers)
        self.depth_decoder = _FusionDecoder(width, num_downsampling, image_channels)
        self.edge_decoder = _FusionDecoder(width, num_downsampling, image_channels)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this."""
        return 2**self.num_downsampling

    def forward(self, content: Tensor, depth: Tensor, edge: Tensor) -> tuple[DecoderOutput, DecoderOutput]:
        """(AHD, AHE) outputs for reference content (B, C, H, W) and target depth and edges (B, 1, H, W)."""
        code = self._encode(content, depth, edge)
        return self.depth_decoder(code, depth * 2 - 1, content), self.edge_decoder(code, edge * 2 - 1, content)

    def decode(self, content: Tensor, depth: Tensor, edge: Tensor, decoder: str) -> DecoderOutput:
        """One decoder's output (``"depth"`` = AHD or ``"edge"`` = AHE); the other is not computed."""
        if decoder not in DECODERS:
            raise ValueError(f"`decoder` must be one of {DECODERS}; got {decoder!r}.")
        code = self._encode(content, depth, edge)
        if decoder == "depth":
            return self.depth_decoder(code, depth * 2 - 1, content)
        return self.edge_decoder(code, edge * 2 - 1, content)

    def _encode(self, content: Tensor, depth: Tensor, edge: Tensor) -> Tensor:
        b, c, h, w = content.shape
        if c != self.image_channels or depth.shape != (b, 1, h, w) or edge.shape != (b, 1, h, w):
            raise ValueError(
                f"Expected content (B, {self.image_channels}, H, W) and depth, edge (B, 1, H, W); got "
                f"{tuple(content.shape)}, {tuple(depth.shape)}, {tuple(edge.shape)}."
            )
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(f"Expected H and W divisible by {m}; got {h}x{w}.")
        return self.encoder(torch.cat([content * 2 - 1, depth * 2 - 1, edge * 2 - 1], dim=1))


def _resized(control: Tensor, like: Tensor) -> Tensor:
    if control.shape[-2:] == like.shape[-2:]:
        return control
    return F.interpolate(control, size=like.shape[-2:], mode="bilinear", align_corners=False, antialias=True)

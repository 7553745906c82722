"""Tiny random-weight extractors and RealNet torch models shared by the model and callback tests."""

from __future__ import annotations

import torch
from torch import nn

from anomalysynth.models.realnet import RealNetModel

CHANNELS = (8, 12, 16, 20)
DIMS = (4, 6, 8, 10)


class TinyExtractor(nn.Module):
    """Four levels at strides 4, 8, 16, 32 with random weights."""

    def __init__(self) -> None:
        super().__init__()
        convs, cin = [], 3
        for i, c in enumerate(CHANNELS):
            convs.append(nn.Conv2d(cin, c, 3, stride=4 if i == 0 else 2, padding=1))
            cin = c
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for conv in self.convs:
            x = torch.relu(conv(x))
            out.append(x)
        return out


class ExtractorWithBatchNorm(TinyExtractor):
    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels).eval())
            for conv in self.convs  # type: ignore[arg-type]
        )
        for block in self.convs:
            block[1].running_mean.uniform_(-1, 1)
            block[1].running_var.uniform_(0.5, 2)


def tiny_model(dims=DIMS, **kwargs) -> RealNetModel:
    torch.manual_seed(0)
    return RealNetModel(TinyExtractor(), CHANNELS, dims, **kwargs)


def tiny_realnet(image_size: int = 64, **kwargs):
    """The Lightning ``RealNet`` around :func:`tiny_model`, with a resize + ImageNet-normalise pre-processor."""
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Compose, Normalize, Resize

    from anomalysynth.models import RealNet

    transform = Compose([Resize((image_size, image_size)), Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    module = RealNet(
        dims=DIMS,
        evaluator=False,
        post_processor=False,
        visualizer=False,
        pre_processor=PreProcessor(transform),
        **kwargs,
    )
    module.model = tiny_model()
    return module

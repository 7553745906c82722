"""RealNet's reconstruction: one small U-Net per level rebuilds the normal features, and
the squared error between features and reconstructions (the residuals) is what the
discriminator and the scoring read."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ReconstructionUNet", "reconstruction_residuals"]


def reconstruction_residuals(features: Sequence[Tensor], reconstructions: Sequence[Tensor]) -> list[Tensor]:
    """Per level, the squared reconstruction error (F - G(F))^2, all channels."""
    return [(f - r).pow(2) for f, r in zip(features, reconstructions, strict=True)]


class ReconstructionUNet(nn.Module):
    """Small U-Net: in = out = ``channels``, base width channels/2, mult (1, 2, 4),
    2 residual blocks per scale, GroupNorm + SiLU, zero-initialised output conv."""

    def __init__(self, channels: int, mult: Sequence[int] = (1, 2, 4), res_blocks: int = 2) -> None:
        super().__init__()
        base = max(4, channels // 2)
        widths = [base * m for m in mult]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        prev = widths[0]
        for i, w in enumerate(widths):
            self.down.append(nn.Sequential(*[_ResBlock(prev if j == 0 else w, w) for j in range(res_blocks)]))
            prev = w
            if i < len(widths) - 1:
                self.pools.append(nn.Conv2d(w, w, 3, stride=2, padding=1))
        self.up = nn.ModuleList()
        for i in reversed(range(len(widths) - 1)):
            self.up.append(nn.Sequential(_ResBlock(prev + widths[i], widths[i]), _ResBlock(widths[i], widths[i])))
            prev = widths[i]
        out_conv = nn.Conv2d(prev, channels, 3, padding=1)
        nn.init.zeros_(out_conv.weight)
        nn.init.zeros_(out_conv.bias)  # type: ignore[arg-type]
        self.out = nn.Sequential(_norm(prev), nn.SiLU(), out_conv)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h)
            if i < len(self.pools):
                skips.append(h)
                h = self.pools[i](h)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
        return self.out(h)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(cin),
            nn.SiLU(),
            nn.Conv2d(cin, cout, 3, padding=1),
            _norm(cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.body(x)


def _norm(channels: int) -> nn.GroupNorm:
    # at most 8 groups of at least 2 channels, so even 1x1 maps normalise
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0 and (channels // g >= 2 or g == 1))
    return nn.GroupNorm(groups, channels)

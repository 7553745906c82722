"""GLASS's local anomaly synthesis (the image-space branch whose features GLASS trains on).

Chen et al., GLASS (ECCV 2024): two Perlin masks (DRAEM's: lattice 2^k, k in 0..5,
rotated, threshold 0.5) combined as their union, their intersection or the first alone
(a third each); a texture (a folder such as DTD, else generated Perlin textures) blended
under the mask as ``A = (1 - M) I + M ((1 - beta) T + beta I)`` with
``beta ~ N(0.5, 0.1)`` clipped to [0.2, 0.8]. Strength is ``1 - beta``, the texture's share.
An empty intersection falls back to the first mask, so a drawn anomaly is never empty.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.base import Synthesizer
from anomalysynth.synth.masks.perlin import render_perlin_mask, sample_perlin_params
from anomalysynth.synth.textures import TextureFolder, generated_textures, match_channels, sample_generated_textures

__all__ = ["GlassLocalAnomalies"]

#: params["mask_mode"]: 0 union, 1 intersection, 2 the first mask alone
MASK_MODES = ("union", "intersection", "single")


class GlassLocalAnomalies(Synthesizer):
    """GLASS's local branch: textures under two combined Perlin masks.

    Args:
        texture_dir: folder of texture images (e.g. DTD); ``None`` uses generated textures.
        beta_mean, beta_std, beta_bounds: the original image's weight inside the mask,
            N(mean, std) clipped to the bounds (GLASS: 0.5, 0.1, [0.2, 0.8]).
        perlin_scale, threshold: the Perlin masks (DRAEM's settings).
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    def __init__(
        self,
        texture_dir: str | Path | None = None,
        beta_mean: float = 0.5,
        beta_std: float = 0.1,
        beta_bounds: tuple[float, float] = (0.2, 0.8),
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if not 0 <= beta_bounds[0] <= beta_bounds[1] < 1 or beta_std < 0:
            raise ValueError(
                f"Expected `beta_bounds` within [0, 1) and `beta_std` >= 0; got {beta_bounds}, {beta_std}."
            )
        self.texture_dir = None if texture_dir is None else str(texture_dir)
        self._textures = None if texture_dir is None else TextureFolder(texture_dir)
        self.beta_mean, self.beta_std = float(beta_mean), float(beta_std)
        self.beta_bounds = (float(beta_bounds[0]), float(beta_bounds[1]))
        self.perlin_scale = (int(perlin_scale[0]), int(perlin_scale[1]))
        self.threshold = float(threshold)

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        rotation = (-90.0, 90.0)
        first = sample_perlin_params(generators, self.perlin_scale, rotation)
        second = sample_perlin_params(generators, self.perlin_scale, rotation)
        params = {f"a_{k}": v for k, v in first.items()} | {f"b_{k}": v for k, v in second.items()}
        params["mask_mode"] = (uniform(generators, 0, 1) * 3).long().clamp(max=2)
        beta = draw(generators, lambda g: torch.randn((), generator=g)) * self.beta_std + self.beta_mean
        params["beta"] = beta.clamp(*self.beta_bounds)
        if self._textures is None:
            params.update(sample_generated_textures(generators))
        else:
            params["texture_index"] = (uniform(generators, 0, 1) * len(self._textures)).long()
        return params

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        b, c, h, w = images.shape
        first = render_perlin_mask({k[2:]: v for k, v in params.items() if k.startswith("a_")}, (h, w), self.threshold)
        second = render_perlin_mask({k[2:]: v for k, v in params.items() if k.startswith("b_")}, (h, w), self.threshold)
        first, second = first.to(images), second.to(images)
        both = first * second
        empty = both.flatten(1).amax(dim=1) == 0
        mode = params["mask_mode"].to(images.device).view(b, 1, 1, 1)
        mask = torch.where(mode == 0, torch.maximum(first, second), first)
        mask = torch.where((mode == 1) & ~empty.view(b, 1, 1, 1), both, mask)
        if self._textures is None:
            textures = generated_textures(params, (h, w))
        else:
            textures = self._textures.load(params["texture_index"].cpu(), (h, w))
        textures = match_channels(textures.to(images), c)
        beta = params["beta"].to(images).view(b, 1, 1, 1)
        blended = (1 - beta) * textures + beta * images
        out = images + mask * (blended - images)
        return out.clamp(0, 1), mask, 1 - beta.view(b)

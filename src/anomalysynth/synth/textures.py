"""Texture images for anomaly sources: a folder of images (e.g. DTD) and generated
coloured Perlin textures (anomalib's fallback without a folder).

DRAEM's texture augmentation lives in :mod:`anomalysynth.synth.augment` (re-exported here).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.augment import TextureAugment
from anomalysynth.synth.foreground import to_gray
from anomalysynth.synth.perlin import perlin_noise

__all__ = [
    "IMAGE_EXTENSIONS",
    "TextureAugment",
    "TextureFolder",
    "colour_noise",
    "generated_textures",
    "match_channels",
    "sample_generated_textures",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_GENERATED_LATTICE = 16


class TextureFolder:
    """Images under ``root`` (recursively, sorted) used as anomaly textures.

    Decoded, resized textures are kept in a small LRU cache, so a texture is read
    from disk once per process rather than once per sample.

    Args:
        root: folder of images, e.g. DTD's ``images/`` folder.
        cache_size: number of decoded textures kept in memory.
        files: the image files to use (default: every image under ``root``).
    """

    def __init__(self, root: str | Path, cache_size: int = 256, files: list[Path] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"Texture folder {str(self.root)!r} does not exist; pass a folder of images (e.g. DTD).")
        if files is None:
            files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        self.files = list(files)
        if not self.files:
            raise ValueError(
                f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under texture folder {str(self.root)!r}."
            )
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, int, int], Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.files)

    def load(self, indices: Tensor, size: tuple[int, int]) -> Tensor:
        """(N, 3, H, W) float textures in [0, 1] for ``indices``."""
        return torch.stack([self._load_one(int(i), size) for i in indices.tolist()])

    def _load_one(self, index: int, size: tuple[int, int]) -> Tensor:
        key = (index, size[0], size[1])
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        path = self.files[index]
        try:
            with Image.open(path) as img:
                array = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
                width, height = img.size
        except OSError as err:
            raise ValueError(f"Cannot read texture image {str(path)!r}: {err}") from err
        texture = array.view(height, width, 3).permute(2, 0, 1).float().div(255).unsqueeze(0)
        texture = F.interpolate(texture, size=size, mode="bilinear", antialias=True, align_corners=False)
        texture = texture[0].clamp(0, 1)
        self._cache[key] = texture
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return texture


def sample_generated_textures(generators: list[torch.Generator]) -> dict[str, Tensor]:
    """Parameters of coloured Perlin textures (used when no texture folder is given)."""
    g = _GENERATED_LATTICE
    out = {
        "tex_scale": draw(generators, lambda gen: 2 ** torch.randint(1, 5, (), generator=gen)),
        "tex_angles": draw(generators, lambda gen: torch.rand(g, g, generator=gen) * (2 * math.pi)),
    }
    colour = draw(generators, lambda gen: torch.rand(6, generator=gen))  # one draw for base and amplitude
    out["tex_base"] = colour[:, :3] * 0.6 + 0.2
    out["tex_amplitude"] = colour[:, 3:] * 0.4 + 0.2
    return out


def generated_textures(params: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
    """(B, 3, H, W) coloured Perlin textures from :func:`sample_generated_textures` parameters.

    One Perlin noise per sample mapped to colour as ``base_c + amplitude_c * noise``.
    """
    scale = params["tex_scale"]
    return colour_noise(perlin_noise(size, scale, scale, params["tex_angles"]), params)


def colour_noise(noise: Tensor, params: dict[str, Tensor]) -> Tensor:
    """(B, 3, H, W) textures ``clamp(base_c + amplitude_c * noise, 0, 1)`` from (B, H, W) noise."""
    b = noise.shape[0]
    noise = noise.unsqueeze(1)
    base = params["tex_base"].view(b, 3, 1, 1)
    amplitude = params["tex_amplitude"].view(b, 3, 1, 1)
    return (noise * amplitude).add_(base).clamp_(0, 1)


def match_channels(textures: Tensor, channels: int) -> Tensor:
    """Grey textures for grey images, RGB otherwise."""
    return to_gray(textures) if channels == 1 else textures

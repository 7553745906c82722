"""Anomaly sources for blending: a folder of texture images, generated Perlin
textures, and DRAEM's "3 of N" texture augmentation done batched on tensors.
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
from anomalysynth.synth.color import shift_hue_saturation
from anomalysynth.synth.foreground import to_gray
from anomalysynth.synth.kernels import augment_textures_cpu, kernels_enabled
from anomalysynth.synth.perlin import perlin_noise, rotation_grid

__all__ = [
    "IMAGE_EXTENSIONS",
    "TextureAugment",
    "TextureFolder",
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
    b = params["tex_angles"].shape[0]
    scale = params["tex_scale"]
    noise = perlin_noise(size, scale, scale, params["tex_angles"]).unsqueeze(1)
    base = params["tex_base"].view(b, 3, 1, 1)
    amplitude = params["tex_amplitude"].view(b, 3, 1, 1)
    return (noise * amplitude).add_(base).clamp_(0, 1)


class TextureAugment:
    """DRAEM's texture augmentation: 3 of 10 operations, in random order, per sample.

    The operations (imgaug in DRAEM) are: gamma contrast (0.5..2, per channel),
    brightness multiply 0.8..1.2 and add -30..30 (of 255), sharpness (factor 0..2),
    hue and saturation shift -50..50 (of 255), solarize (p 0.5, threshold 32..128),
    posterize (1..8 bits), invert, autocontrast (cutoff 0..20 %), equalize, rotate
    -45..45 degrees. On grey images the hue/saturation operation is the identity.

    Like imgaug, every operation works on 8-bit levels. That makes the seven
    per-pixel operations lookup tables of 256 entries per sample and channel:
    consecutive ones compose into one table (autocontrast and equalize read the
    histogram through the table, never the pixels), and pixels are touched only
    by the spatial/colour operations (sharpness, hue/saturation, rotation) and by
    one final lookup.
    """

    num_ops = 10
    ops_per_sample = 3

    def sample(self, generators: list[torch.Generator]) -> dict[str, Tensor]:
        """Per-sample augmentation parameters (prefixed ``aug_``).

        The ten scalars come from one draw of ten uniforms per sample (a draw costs
        more than the arithmetic that maps it).
        """
        u = draw(generators, lambda g: torch.rand(10, generator=g)).unbind(dim=1)
        return {
            "aug_ops": draw(generators, lambda g: torch.randperm(self.num_ops, generator=g)[: self.ops_per_sample]),
            "aug_gamma": draw(generators, lambda g: torch.rand(3, generator=g) * 1.5 + 0.5),
            "aug_mul": u[0] * 0.4 + 0.8,
            "aug_add": u[1] * (60 / 255) - 30 / 255,
            "aug_sharpness": u[2] * 2.0,
            "aug_hue": u[3] * (100 / 255) - 50 / 255,
            "aug_saturation": u[4] * (100 / 255) - 50 / 255,
            "aug_solarize_p": u[5] < 0.5,
            "aug_solarize_threshold": u[6] * (96 / 255) + 32 / 255,
            "aug_posterize_bits": (u[7] * 8).long().clamp_(max=7) + 1,
            "aug_autocontrast_cutoff": u[8] * 0.2,
            "aug_rotation": u[9] * 90.0 - 45.0,
        }

    def __call__(self, textures: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Augment (B, C, H, W) textures in [0, 1] with the drawn operations."""
        if kernels_enabled(textures):
            return augment_textures_cpu(textures, {k: v.cpu() for k, v in params.items() if k.startswith("aug_")})
        b, c = textures.shape[:2]
        device = textures.device
        levels = _quantize(textures)  # (B, C, H*W) int32 8-bit levels
        identity = torch.arange(256, device=device, dtype=textures.dtype) / 255
        table = identity.expand(b, c, 256).clone()  # pending per-pixel mapping, level -> value
        ops = params["aug_ops"].to(device)
        aug = {k: v.to(device) for k, v in params.items() if k.startswith("aug_")}
        for slot in range(ops.shape[1]):
            # within a slot every sample gets one operation, so the index sets are disjoint
            for op in torch.unique(ops[:, slot]).tolist():
                idx = torch.nonzero(ops[:, slot] == op).flatten()
                func, kind, keys = _OPS[op]
                sub = {k: aug[k][idx] for k in keys}
                if kind == "table":
                    # the operation maps values, so it maps the table's entries
                    table[idx] = _requantize(func(table[idx].unsqueeze(2), sub).squeeze(2))
                elif kind == "histogram":
                    # histogram of the current image: the pixels' histogram pushed through the table
                    entries = (table[idx] * 255).round_().long()
                    hist = torch.zeros(len(idx), c, 256, device=device)
                    hist.scatter_add_(2, entries, _histogram(levels[idx]))
                    table[idx] = torch.gather(func(hist, sub), 2, entries)
                else:
                    pixels = _lookup(table[idx], levels[idx]).view(len(idx), *textures.shape[1:])
                    levels[idx] = _quantize(func(pixels, sub))
                    table[idx] = identity
        return _lookup(table, levels).view(textures.shape)


def _quantize(x: Tensor) -> Tensor:
    """(N, C, H*W) int32 8-bit levels of (N, C, H, W) values (clamped to [0, 1]).

    int32, not int64: on CPU a conversion to int64 costs several times a float pass.
    """
    scaled = x.reshape(x.shape[0], x.shape[1], -1) * 255
    return scaled.clamp_(0, 255).round_().to(torch.int32)


def _flat_index(levels: Tensor) -> Tensor:
    """Indices of (N, C, L) int32 levels into the flattened (N, C, 256) tables."""
    n, c = levels.shape[:2]
    offsets = torch.arange(0, n * c * 256, 256, device=levels.device, dtype=torch.int32).view(n, c, 1)
    return (levels + offsets).view(-1)


def _lookup(table: Tensor, levels: Tensor) -> Tensor:
    """(N, C, L) values ``table[n, c, levels[n, c, l]]`` (index_select takes int32 indices)."""
    return table.reshape(-1).index_select(0, _flat_index(levels)).view(levels.shape)


def _requantize(values: Tensor) -> Tensor:
    return (values.clamp(0, 1) * 255).round_() / 255


def _histogram(levels: Tensor) -> Tensor:
    """(N, C, 256) float pixel counts of (N, C, L) int32 levels: one bincount for all rows."""
    n, c = levels.shape[:2]
    counts = torch.bincount(_flat_index(levels), minlength=n * c * 256)
    return counts.view(n, c, 256).to(torch.float32)


def _gamma(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    gamma = p["aug_gamma"][:, : x.shape[1]].view(x.shape[0], x.shape[1], 1, 1)
    return x.clamp_min(0).pow(gamma)


def _brightness(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return x * p["aug_mul"].view(-1, 1, 1, 1) + p["aug_add"].view(-1, 1, 1, 1)


def _sharpness(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    # PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13: a separable 3x3 box sum plus 4x the centre
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = torch.add(padded[..., :-2, :], padded[..., 1:-1, :]).add_(padded[..., 2:, :])
    smooth = torch.add(rows[..., :-2], rows[..., 1:-1]).add_(rows[..., 2:]).add_(x, alpha=4).div_(13)
    # smooth + factor (x - smooth), in place
    return smooth.sub_(x).mul_(1 - p["aug_sharpness"].view(-1, 1, 1, 1)).add_(x)


def _hue_saturation(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return shift_hue_saturation(x, p["aug_hue"], p["aug_saturation"])


def _solarize(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    threshold = p["aug_solarize_threshold"].view(-1, 1, 1, 1)
    solarized = torch.where(x >= threshold, 1 - x, x)
    return torch.where(p["aug_solarize_p"].view(-1, 1, 1, 1), solarized, x)


def _posterize(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    step = torch.pow(2.0, (8 - p["aug_posterize_bits"]).to(x.dtype)).view(-1, 1, 1, 1)
    return torch.floor(torch.round(x * 255) / step) * step / 255


def _invert(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return 1 - x


def _autocontrast(hist: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Table stretching [lo, hi] to [0, 1], cutting ``cutoff`` of the pixels at each end."""
    cdf = hist.cumsum(dim=2) / hist.sum(dim=2, keepdim=True)
    cutoff = p["aug_autocontrast_cutoff"].view(-1, 1, 1)
    levels = torch.arange(256, device=hist.device).view(1, 1, 256)
    lo = torch.where(cdf > cutoff, levels, 255).amin(dim=2, keepdim=True).float() / 255
    hi = torch.where(cdf < 1 - cutoff, levels + 1, 0).amax(dim=2, keepdim=True).clamp(max=255).float() / 255
    hi = torch.maximum(hi, lo + 1 / 255)
    return _requantize((levels / 255 - lo) / (hi - lo))


def _equalize(hist: Tensor, p: dict[str, Tensor]) -> Tensor:
    """Table mapping each level to its cumulative frequency."""
    return _requantize(hist.cumsum(dim=2) / hist.sum(dim=2, keepdim=True))


def _rotate(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    size = (x.shape[-2], x.shape[-1])
    grid = rotation_grid(p["aug_rotation"], size, size)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


# (operation, how it is applied, the parameters it reads): "table" maps values,
# "histogram" builds a table from the histogram, "pixels" needs the image itself
_OPS = (
    (_gamma, "table", ("aug_gamma",)),
    (_brightness, "table", ("aug_mul", "aug_add")),
    (_sharpness, "pixels", ("aug_sharpness",)),
    (_hue_saturation, "pixels", ("aug_hue", "aug_saturation")),
    (_solarize, "table", ("aug_solarize_p", "aug_solarize_threshold")),
    (_posterize, "table", ("aug_posterize_bits",)),
    (_invert, "table", ()),
    (_autocontrast, "histogram", ("aug_autocontrast_cutoff",)),
    (_equalize, "histogram", ()),
    (_rotate, "pixels", ("aug_rotation",)),
)


def match_channels(textures: Tensor, channels: int) -> Tensor:
    """Grey textures for grey images, RGB otherwise."""
    return to_gray(textures) if channels == 1 else textures

"""DRAEM's texture augmentation: 3 of 10 operations per sample, batched on tensors.

The torch reference: it runs on every device and imports no compiled code
(:mod:`anomalysynth.synth.dispatch` chooses the compiled kernel on CPU). Solarize and
posterize are kornia's (applied to the 256-entry tables, where they cost nothing);
see the README for why the other operations are not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.enhance import posterize, solarize
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth.color import shift_hue_saturation
from anomalysynth.synth.perlin import rotation_grid

__all__ = ["TEXTURE_OPERATIONS", "TextureAugment"]


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
                func, kind, keys = TEXTURE_OPERATIONS[op]
                sub = {k: aug[k][idx] for k in keys}
                if kind == "table":
                    # the operation maps values, so it maps the table's entries
                    table[idx] = _requantize(func(table[idx].unsqueeze(2), sub).squeeze(2))
                elif kind == "histogram":
                    # histogram of the current image: the pixels' histogram pushed through the table
                    entries = (table[idx] * 255).round_().long()
                    hist = torch.zeros(len(idx), c, 256, device=device)
                    hist.scatter_add_(2, entries, _histogram(levels[idx]))
                    table[idx] = torch.gather(func(hist, sub), 2, entries).to(table.dtype)
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
    # PIL leaves the one-pixel border unfiltered
    smooth[..., 0, :], smooth[..., -1, :] = x[..., 0, :], x[..., -1, :]
    smooth[..., :, 0], smooth[..., :, -1] = x[..., :, 0], x[..., :, -1]
    # smooth + factor (x - smooth), in place
    return smooth.sub_(x).mul_(1 - p["aug_sharpness"].view(-1, 1, 1, 1)).add_(x)


def _hue_saturation(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return shift_hue_saturation(x, p["aug_hue"], p["aug_saturation"])


def _solarize(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    solarized = solarize(x, p["aug_solarize_threshold"].to(x.dtype))
    return torch.where(p["aug_solarize_p"].view(-1, 1, 1, 1), solarized, x)


def _posterize(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return posterize(x, p["aug_posterize_bits"].to(x.device))


def _invert(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    return 1 - x


def _autocontrast(hist: Tensor, p: dict[str, Tensor]) -> Tensor:
    """PIL's ``ImageOps.autocontrast(cutoff)`` table: cut ``floor(n * cutoff)`` pixels at each
    end of the histogram, then stretch the remaining [lo, hi] to [0, 255] (truncating)."""
    counts = hist.double()
    cut = torch.floor(counts.sum(dim=2, keepdim=True) * p["aug_autocontrast_cutoff"].double().view(-1, 1, 1))
    levels = torch.arange(256, device=hist.device, dtype=torch.float64).view(1, 1, 256)
    lo = torch.where(counts.cumsum(dim=2) > cut, levels, 255.0).amin(dim=2, keepdim=True)
    hi = torch.where(counts.flip(2).cumsum(dim=2).flip(2) > cut, levels, 0.0).amax(dim=2, keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1)
    table = torch.floor(levels * scale - lo * scale).clamp_(0, 255)
    return torch.where(hi > lo, table, levels).float() / 255


def _equalize(hist: Tensor, p: dict[str, Tensor]) -> Tensor:
    """PIL's ``ImageOps.equalize`` table: level k maps to ``(step // 2 + pixels below k) // step``
    with ``step = (pixels - pixels of the last level present) // 255``; the identity when
    ``step`` is 0 or a single level is present."""
    counts = hist.double()
    levels = torch.arange(256, device=hist.device, dtype=torch.float64).view(1, 1, 256)
    present = counts > 0
    last = torch.gather(counts, 2, torch.where(present, levels, -1.0).amax(dim=2, keepdim=True).clamp_min(0).long())
    step = torch.floor((counts.sum(dim=2, keepdim=True) - last) / 255)
    step = torch.where(present.sum(dim=2, keepdim=True) > 1, step, 0.0)
    below = counts.cumsum(dim=2) - counts
    table = torch.floor((torch.floor(step / 2) + below) / step.clamp_min(1)).clamp_(max=255)
    return torch.where(step > 0, table, levels).float() / 255


def _rotate(x: Tensor, p: dict[str, Tensor]) -> Tensor:
    size = (x.shape[-2], x.shape[-1])
    grid = rotation_grid(p["aug_rotation"], size, size)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


#: (operation, how it is applied, the parameters it reads), in the order of the codes in
#: ``params["aug_ops"]``: "table" maps values, "histogram" builds a table from the
#: histogram, "pixels" needs the image itself
TEXTURE_OPERATIONS = (
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

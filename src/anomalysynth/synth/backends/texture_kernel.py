"""DRAEM's texture augmentation on 8-bit levels, one pass per sample.

The same operations, in the same order and arithmetic, as
:class:`anomalysynth.synth.textures.TextureAugment` (the reference): table
operations compose into one 256-entry table per channel, histogram operations
read the histogram through it, and only sharpness, hue/saturation and rotation
touch pixels. ``augment_levels`` can evaluate a last pixel operation at a list of
pixels only (the fused synthesis needs the mask's pixels alone).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from anomalysynth.synth.backends.jit import as_array, jit, jit_inline
from anomalysynth.synth.backends.pool import parallel

__all__ = ["augment_arrays", "augment_levels", "augment_textures_cpu", "level"]

# operation codes, in the order of anomalysynth.synth.textures._OPS
_GAMMA, _BRIGHT, _SHARP, _HUESAT, _SOLAR, _POSTER, _INVERT, _AUTOC, _EQUAL, _ROTATE = range(10)


def augment_textures_cpu(textures: Tensor, params: dict[str, Tensor]) -> Tensor:
    """:class:`anomalysynth.synth.textures.TextureAugment` on CPU float32 textures."""
    b, c, h, w = textures.shape
    x = as_array(textures)
    out = torch.empty(b, c, h, w, dtype=torch.float32)
    o = out.numpy()
    ops, gamma, s = augment_arrays(params)
    parallel(b, lambda start, stop: _augment_kernel(x, o, ops, gamma, s, start, stop))
    return out


@jit_inline
def _requant(v: np.float32) -> np.float32:
    v = min(max(v, np.float32(0)), np.float32(1))
    return np.float32(np.rint(v * np.float32(255))) / np.float32(255)


@jit_inline
def level(v: np.float32) -> np.int32:
    v = min(max(v * np.float32(255), np.float32(0)), np.float32(255))
    return np.int32(np.rint(v))


@jit
def _augment_kernel(
    textures: np.ndarray,
    out: np.ndarray,
    ops: np.ndarray,
    gamma: np.ndarray,
    s: np.ndarray,
    start: int,
    stop: int,
) -> None:
    _b, c, h, w = textures.shape
    n = h * w
    levels = np.empty((c, n), np.int32)
    pixels = np.empty((c, h, w), np.float32)
    scratch = np.empty((c, h, w), np.float32)
    table = np.empty((c, 256), np.float32)
    tables = np.empty((4, c, 256), np.float32)
    padded = np.zeros((c, h + 2, w + 2), np.float32)
    padded_index = np.empty(0, np.int64)  # every pixel is wanted: no sparse evaluation
    for b in range(start, stop):
        flat = textures[b].reshape(c, n)
        for ch in range(c):
            for k in range(n):
                levels[ch, k] = level(flat[ch, k])
        augment_levels(levels, table, pixels, scratch, tables, padded, ops[b], gamma[b], s[b], padded_index, -1)
        for ch in range(c):
            ov = out[b, ch].reshape(n)
            lv = levels[ch]
            for k in range(n):
                ov[k] = table[ch, lv[k]]


@jit
def augment_levels(
    levels: np.ndarray,
    table: np.ndarray,
    pixels: np.ndarray,
    scratch: np.ndarray,
    tables: np.ndarray,
    padded: np.ndarray,
    ops: np.ndarray,
    gamma: np.ndarray,
    s: np.ndarray,
    inside: np.ndarray,
    count: int,
) -> None:
    """Apply one sample's operations to its 8-bit ``levels`` (C, H*W); the result is
    ``table[c, levels[c, k]]`` (table ops compose into ``table``, as in the torch code).

    With ``count >= 0`` only the pixels ``inside[:count]`` of the result are wanted: a
    pixel operation followed by table operations alone is then evaluated at those
    pixels only (reading its input through the table), and the other levels are left stale.
    """
    c, n = levels.shape
    h, w = pixels.shape[1], pixels.shape[2]
    hist = tables[0]
    pushed = tables[1]
    new = tables[2]
    # the last operation that reads other pixels or the histogram
    last = -1
    for slot in range(ops.shape[0]):
        op = ops[slot]
        if op in (_SHARP, _ROTATE, _AUTOC, _EQUAL) or (op == _HUESAT and c == 3):
            last = slot
    for ch in range(c):
        for k in range(256):
            table[ch, k] = np.float32(k) / np.float32(255)
    hist_valid = False
    for slot in range(ops.shape[0]):
        op = ops[slot]
        if op <= _INVERT and op != _SHARP and op != _HUESAT:
            for ch in range(c):
                for k in range(256):
                    table[ch, k] = _requant(_table_op(op, table[ch, k], gamma[ch], s))
        elif op in (_AUTOC, _EQUAL):
            if not hist_valid:
                hist[:] = 0
                for ch in range(c):
                    for k in range(n):
                        hist[ch, levels[ch, k]] += np.float32(1)
                hist_valid = True
            pushed[:] = 0
            for ch in range(c):
                for k in range(256):
                    pushed[ch, np.int32(np.rint(table[ch, k] * np.float32(255)))] += hist[ch, k]
            _histogram_table(op, pushed, s[8], new)
            for ch in range(c):
                for k in range(256):
                    table[ch, k] = new[ch, np.int32(np.rint(table[ch, k] * np.float32(255)))]
        elif op == _HUESAT and c != 3:
            continue  # the identity on grey textures
        elif slot == last and count >= 0:
            # only table operations follow: the wanted pixels are all that is needed
            result = scratch.reshape(c, n)
            cos = np.float32(math.cos(s[9]))
            sin = np.float32(math.sin(s[9]))
            for i in range(count):
                k = inside[i]
                if op == _SHARP:
                    _sharpness_at(levels, table, k // w, k % w, h, w, s[2], result, i)
                elif op == _HUESAT:
                    _hue_saturation_at(levels, table, k, s[3], s[4], result, i)
                else:
                    _rotate_at(levels, table, k // w, k % w, h, w, cos, sin, result, i)
            for ch in range(c):
                for i in range(count):
                    levels[ch, inside[i]] = level(result[ch, i])
                for k in range(256):
                    table[ch, k] = np.float32(k) / np.float32(255)
        else:
            for ch in range(c):
                lv = levels[ch]
                pv = pixels[ch].reshape(n)
                for k in range(n):
                    pv[k] = table[ch, lv[k]]
            if op == _SHARP:
                _sharpness(pixels, scratch, s[2])
            elif op == _HUESAT:
                _hue_saturation(pixels, scratch, s[3], s[4])
            else:
                _rotate(pixels, scratch, padded, s[9])
            for ch in range(c):
                sv = scratch[ch].reshape(n)
                for k in range(n):
                    levels[ch, k] = level(sv[k])
                for k in range(256):
                    table[ch, k] = np.float32(k) / np.float32(255)
            hist_valid = False


@jit_inline
def _value(levels: np.ndarray, table: np.ndarray, ch: int, y: int, x: int, w: int) -> np.float32:
    return table[ch, levels[ch, y * w + x]]


@jit
def _sharpness_at(
    levels: np.ndarray,
    table: np.ndarray,
    y: int,
    x: int,
    h: int,
    w: int,
    factor: np.float32,
    result: np.ndarray,
    i: int,
) -> None:
    """:func:`_sharpness` at one pixel, the same arithmetic in the same order."""
    ya = max(y - 1, 0)
    yb = min(y + 1, h - 1)
    xa = max(x - 1, 0)
    xb = min(x + 1, w - 1)
    keep = np.float32(1) - factor
    border = y == 0 or y == h - 1 or x == 0 or x == w - 1
    for ch in range(levels.shape[0]):
        left = _value(levels, table, ch, ya, xa, w) + _value(levels, table, ch, y, xa, w)
        left = left + _value(levels, table, ch, yb, xa, w)
        mid = _value(levels, table, ch, ya, x, w) + _value(levels, table, ch, y, x, w)
        mid = mid + _value(levels, table, ch, yb, x, w)
        right = _value(levels, table, ch, ya, xb, w) + _value(levels, table, ch, y, xb, w)
        right = right + _value(levels, table, ch, yb, xb, w)
        centre = _value(levels, table, ch, y, x, w)
        if border:
            result[ch, i] = centre
            continue
        smooth = (left + mid + right + np.float32(4) * centre) / np.float32(13)
        result[ch, i] = (smooth - centre) * keep + centre


@jit
def _hue_saturation_at(
    levels: np.ndarray, table: np.ndarray, k: int, hue: np.float32, saturation: np.float32, result: np.ndarray, i: int
) -> None:
    """:func:`_hue_saturation` at one pixel."""
    r = table[0, levels[0, k]]
    g = table[1, levels[1, k]]
    bl = table[2, levels[2, k]]
    out = _hsv_shift(r, g, bl, hue, saturation)
    result[0, i] = out[0]
    result[1, i] = out[1]
    result[2, i] = out[2]


@jit
def _rotate_at(
    levels: np.ndarray,
    table: np.ndarray,
    y: int,
    x: int,
    h: int,
    w: int,
    cos: np.float32,
    sin: np.float32,
    result: np.ndarray,
    i: int,
) -> None:
    """:func:`_rotate` at one pixel (``cos``, ``sin`` of its angle): the same coordinates,
    zeros outside the image."""
    cx = np.float32(w) / np.float32(2) + np.float32(0.5)
    cy = np.float32(h) / np.float32(2) + np.float32(0.5)
    ys = np.float32(y) + np.float32(0.5) - np.float32(h) / np.float32(2)
    xs = np.float32(x) + np.float32(0.5) - np.float32(w) / np.float32(2)
    sx = cos * xs - sin * ys + cx
    sy = sin * xs + cos * ys + cy
    c = levels.shape[0]
    if not (sx >= np.float32(0) and sy >= np.float32(0) and sx < np.float32(w + 1) and sy < np.float32(h + 1)):
        for ch in range(c):
            result[ch, i] = np.float32(0)
        return
    x0 = np.int64(np.uint32(sx)) - 1  # image coordinates of the top-left tap
    y0 = np.int64(np.uint32(sy)) - 1
    fx = sx - np.float32(x0 + 1)
    fy = sy - np.float32(y0 + 1)
    w00 = (np.float32(1) - fx) * (np.float32(1) - fy)
    w01 = fx * (np.float32(1) - fy)
    w10 = (np.float32(1) - fx) * fy
    w11 = fx * fy
    # taps outside the image are zero (written out: a helper call per tap is slow here)
    top_in = 0 <= y0 < h
    bottom_in = 0 <= y0 + 1 < h
    left_in = 0 <= x0 < w
    right_in = 0 <= x0 + 1 < w
    k = y0 * w + x0
    zero = np.float32(0)
    for ch in range(c):
        v00 = table[ch, levels[ch, k]] if top_in and left_in else zero
        v01 = table[ch, levels[ch, k + 1]] if top_in and right_in else zero
        v10 = table[ch, levels[ch, k + w]] if bottom_in and left_in else zero
        v11 = table[ch, levels[ch, k + w + 1]] if bottom_in and right_in else zero
        result[ch, i] = ((v00 * w00 + v01 * w01) + v10 * w10) + v11 * w11


@jit
def _table_op(op: int, x: np.float32, gamma: np.float32, s: np.ndarray) -> np.float32:
    if op == _GAMMA:
        return np.float32(max(x, np.float32(0)) ** gamma)
    if op == _BRIGHT:
        return x * s[0] + s[1]
    if op == _SOLAR:
        if s[5] > np.float32(0.5) and x >= s[6]:
            return np.float32(1) - x
        return x
    if op == _POSTER:
        step = np.float32(2.0 ** (8 - int(s[7])))
        return np.float32(math.floor(np.rint(x * np.float32(255)) / step)) * step / np.float32(255)
    return np.float32(1) - x  # invert


@jit
def _histogram_table(op: int, hist: np.ndarray, cutoff: np.float32, new: np.ndarray) -> None:
    """PIL's ``ImageOps.equalize`` / ``ImageOps.autocontrast(cutoff)`` tables from the histogram."""
    c = hist.shape[0]
    for ch in range(c):
        total = np.float64(0)
        for k in range(256):
            total += hist[ch, k]
        if op == _EQUAL:
            last = np.float64(0)  # the count of the last level present
            distinct = 0
            for k in range(256):
                if hist[ch, k] > 0:
                    last = np.float64(hist[ch, k])
                    distinct += 1
            step = math.floor((total - last) / 255) if distinct > 1 else 0
            n = np.float64(step // 2)
            for k in range(256):
                if step == 0:
                    new[ch, k] = np.float32(k) / np.float32(255)
                else:
                    new[ch, k] = np.float32(min(math.floor(n / step), 255)) / np.float32(255)
                n += hist[ch, k]
            continue
        # autocontrast: cut floor(n * cutoff) pixels at each end, stretch [lo, hi] to [0, 255]
        cut = math.floor(total * np.float64(cutoff))
        lo = 255
        acc = np.float64(0)
        for k in range(256):
            acc += hist[ch, k]
            if acc > cut:
                lo = k
                break
        hi = 0
        acc = np.float64(0)
        for k in range(255, -1, -1):
            acc += hist[ch, k]
            if acc > cut:
                hi = k
                break
        if hi <= lo:
            for k in range(256):
                new[ch, k] = np.float32(k) / np.float32(255)
            continue
        scale = 255.0 / (hi - lo)
        offset = -lo * scale
        for k in range(256):
            v = min(max(math.floor(k * scale + offset), 0), 255)
            new[ch, k] = np.float32(v) / np.float32(255)


@jit
def _sharpness(x: np.ndarray, out: np.ndarray, factor: np.float32) -> None:
    """PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 blended with ``factor``; the
    one-pixel border is left as it is (PIL's ``ImageEnhance.Sharpness``)."""
    c, h, w = x.shape
    keep = np.float32(1) - factor
    rows = np.empty(w, np.float32)
    for ch in range(c):
        for y in range(h):
            ya = max(y - 1, 0)
            yb = min(y + 1, h - 1)
            for i in range(w):
                rows[i] = x[ch, ya, i] + x[ch, y, i] + x[ch, yb, i]
            for i in range(w):
                left = rows[max(i - 1, 0)]
                right = rows[min(i + 1, w - 1)]
                centre = x[ch, y, i]
                if y == 0 or y == h - 1 or i == 0 or i == w - 1:
                    out[ch, y, i] = centre  # PIL leaves the border unfiltered
                    continue
                smooth = (left + rows[i] + right + np.float32(4) * centre) / np.float32(13)
                out[ch, y, i] = (smooth - centre) * keep + centre


@jit
def _hue_saturation(x: np.ndarray, out: np.ndarray, hue: np.float32, saturation: np.float32) -> None:
    """:func:`anomalysynth.synth.color.shift_hue_saturation` for one RGB image."""
    _c, h, w = x.shape
    for y in range(h):
        for i in range(w):
            r, g, bl = _hsv_shift(x[0, y, i], x[1, y, i], x[2, y, i], hue, saturation)
            out[0, y, i] = r
            out[1, y, i] = g
            out[2, y, i] = bl


@jit_inline
def _hsv_shift(
    r: np.float32, g: np.float32, bl: np.float32, hue: np.float32, saturation: np.float32
) -> tuple[np.float32, np.float32, np.float32]:
    """One pixel of :func:`anomalysynth.synth.color.shift_hue_saturation`."""
    tiny = np.float32(1e-20)
    value = max(max(r, g), bl)
    chroma = value - min(min(r, g), bl)
    inv = np.float32(1) / max(chroma, tiny)
    if value == r:
        sextant = (g - bl) * inv
    elif value == g:
        sextant = (bl - r) * inv + np.float32(2)
    else:
        sextant = (r - g) * inv + np.float32(4)
    sextant = (sextant + hue * np.float32(6)) / np.float32(6)
    sextant = (sextant - np.float32(math.floor(sextant))) * np.float32(6)
    sat = chroma / max(value, tiny)
    scale = min(max(sat + saturation, np.float32(0)), np.float32(1)) * value
    return (
        value - _hue_weight(sextant, np.float32(3)) * scale,
        value - _hue_weight(sextant, np.float32(5)) * scale,
        value - _hue_weight(sextant, np.float32(1)) * scale,
    )


@jit_inline
def _hue_weight(sextant: np.float32, opposite: np.float32) -> np.float32:
    d = abs(sextant - opposite)
    return min(max(max(np.float32(2) - d, d - np.float32(4)), np.float32(0)), np.float32(1))


@jit
def _rotate(x: np.ndarray, out: np.ndarray, padded: np.ndarray, theta: np.float32) -> None:
    """Bilinear rotation about the centre, zeros outside (``grid_sample``, align_corners=False).

    ``padded`` (C, H + 2, W + 2) is work space whose one-pixel border is zero: it stands
    for grid_sample's zero padding, so the taps need no bounds checks.
    """
    c, h, w = x.shape
    for ch in range(c):
        for y in range(h):
            for i in range(w):
                padded[ch, y + 1, i + 1] = x[ch, y, i]
    flat = padded.reshape(padded.size)
    stride = np.uint64(w + 2)
    plane = np.uint64((h + 2) * (w + 2))
    one = np.uint64(1)
    cos = np.float32(math.cos(theta))
    sin = np.float32(math.sin(theta))
    # padded coordinates: the original ones plus one
    cx = np.float32(w) / np.float32(2) + np.float32(0.5)
    cy = np.float32(h) / np.float32(2) + np.float32(0.5)
    limit_x = np.float32(w + 1)
    limit_y = np.float32(h + 1)
    for y in range(h):
        ys = np.float32(y) + np.float32(0.5) - np.float32(h) / np.float32(2)
        for i in range(w):
            xs = np.float32(i) + np.float32(0.5) - np.float32(w) / np.float32(2)
            sx = cos * xs - sin * ys + cx
            sy = sin * xs + cos * ys + cy
            if not (sx >= np.float32(0) and sy >= np.float32(0) and sx < limit_x and sy < limit_y):
                for ch in range(c):
                    out[ch, y, i] = np.float32(0)
                continue
            x0 = np.uint32(sx)
            y0 = np.uint32(sy)
            fx = sx - np.float32(x0)
            fy = sy - np.float32(y0)
            w00 = (np.float32(1) - fx) * (np.float32(1) - fy)
            w01 = fx * (np.float32(1) - fy)
            w10 = (np.float32(1) - fx) * fy
            w11 = fx * fy
            k = np.uint64(y0) * stride + np.uint64(x0)
            for ch in range(c):
                j = k + np.uint64(ch) * plane
                out[ch, y, i] = ((flat[j] * w00 + flat[j + one] * w01) + flat[j + stride] * w10) + flat[
                    j + stride + one
                ] * w11


def augment_arrays(params: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scalars = torch.stack(
        [
            params["aug_mul"].float(),
            params["aug_add"].float(),
            params["aug_sharpness"].float(),
            params["aug_hue"].float(),
            params["aug_saturation"].float(),
            params["aug_solarize_p"].float(),
            params["aug_solarize_threshold"].float(),
            params["aug_posterize_bits"].float(),
            params["aug_autocontrast_cutoff"].float(),
            params["aug_rotation"].float() * (math.pi / 180),
        ],
        dim=1,
    )
    return (
        as_array(params["aug_ops"].to(torch.int64)),
        as_array(params["aug_gamma"].to(torch.float32)),
        as_array(scalars),
    )

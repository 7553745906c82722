"""Compiled CPU kernels (numba) for the Perlin noise and the texture augmentation.

The torch implementations in :mod:`anomalysynth.synth.perlin` and
:mod:`anomalysynth.synth.textures` are the reference and run on every device. On
CPU float32 tensors these kernels compute the same arithmetic in one pass per
stage instead of a dozen tensor passes: one sample stays in cache from its first
operation to its last. They agree with the torch code up to float rounding
(the 8-bit quantisation of the texture operations can move a rare pixel by one
level; ``tests/synth/test_kernels.py`` bounds it).

The kernels release the GIL and run one slice of the batch per thread of a small
pool sized by ``torch.get_num_threads()`` (one thread in DataLoader workers), so
they need no numba threading layer and are safe under ``fork``.

Set ``ANOMALYSYNTH_KERNELS=0`` to use the torch code everywhere.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "augment_textures_cpu",
    "channels_equal_cpu",
    "check_lattice",
    "kernels_enabled",
    "perlin_noise_cpu",
    "perlin_texture_cpu",
]

numba: Any
try:  # pragma: no cover - exercised by whichever environment runs the tests
    import numba

    _NUMBA_ERROR: str | None = None
except ImportError as err:  # pragma: no cover
    numba = None
    _NUMBA_ERROR = str(err)


def kernels_enabled(*tensors: Tensor) -> bool:
    """True when the compiled kernels can take these tensors: numba present, CPU, float32."""
    if numba is None or os.environ.get("ANOMALYSYNTH_KERNELS", "1") == "0":
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


# ---------------------------------------------------------------------- thread pool
_pool: ThreadPoolExecutor | None = None
_pool_key: tuple[int, int] = (0, 0)
_pool_lock = threading.Lock()


def _get_pool(threads: int) -> ThreadPoolExecutor:
    global _pool, _pool_key
    with _pool_lock:
        key = (os.getpid(), threads)  # a forked child rebuilds its pool
        if _pool is None or _pool_key != key:
            _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="anomalysynth")
            _pool_key = key
        return _pool


def _parallel(batch: int, run: Callable[[int, int], Any]) -> None:
    """``run(start, stop)`` over slices of ``range(batch)``, one per torch thread."""
    threads = max(1, min(torch.get_num_threads(), batch))
    if threads == 1:
        run(0, batch)
        return
    pool = _get_pool(threads)
    bounds = [batch * i // threads for i in range(threads + 1)]
    futures = [pool.submit(run, bounds[i], bounds[i + 1]) for i in range(1, threads)]
    run(bounds[0], bounds[1])
    for future in futures:
        future.result()


_local = threading.local()


def _parallel_samples(batch: int, make_work: Callable[[], tuple], key: tuple, run: Callable[[int, tuple], Any]) -> None:
    """``run(i, work)`` for every sample ``i``, samples handed out one at a time to the
    torch threads (their costs differ several-fold: rotations, histograms), each thread
    with its own work arrays, kept between calls (no allocation, no page faults)."""
    counter = itertools.count()

    def worker() -> None:
        cached = getattr(_local, "work", None)
        if cached is None or cached[0] != key:
            cached = (key, make_work())
            _local.work = cached
        work = cached[1]
        while (i := next(counter)) < batch:  # next() on a count is atomic under the GIL
            run(i, work)

    threads = max(1, min(torch.get_num_threads(), batch))
    if threads == 1:
        worker()
        return
    futures = [_get_pool(threads).submit(worker) for _ in range(threads - 1)]
    worker()
    for future in futures:
        future.result()


def check_lattice(res_y: Tensor, res_x: Tensor, grid: int) -> None:
    """Perlin lattice resolutions must lie in [1, grid] (the kernels index the angle grid with them)."""
    if int(torch.maximum(res_y, res_x).max()) > grid or int(torch.minimum(res_y, res_x).min()) < 1:
        raise ValueError(f"Lattice resolution must lie in [1, {grid}]; got {res_y.tolist()} x {res_x.tolist()}.")


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


# ---------------------------------------------------------------------- Perlin noise
def perlin_noise_cpu(
    size: tuple[int, int],
    res_y: Tensor,
    res_x: Tensor,
    angles: Tensor,
    rotation_deg: Tensor | None,
    threshold: float | None = None,
) -> Tensor:
    """:func:`anomalysynth.synth.perlin.perlin_noise` (validated arguments) on CPU; with
    ``threshold``, :func:`~anomalysynth.synth.perlin.perlin_mask` of it in the same pass."""
    h, w = size
    b = angles.shape[0]
    out = torch.empty(b, h, w, dtype=torch.float32)
    ry = _np(res_y.to(torch.int64))
    rx = _np(res_x.to(torch.int64))
    ang = _np(angles.to(torch.float32))
    rot = _np(torch.zeros(b) if rotation_deg is None else rotation_deg.to(torch.float32) * (math.pi / 180)).astype(
        np.float32
    )
    o = out.numpy()
    rotate = rotation_deg is not None
    thr = math.nan if threshold is None else float(threshold)
    _parallel(b, lambda s, e: _perlin_kernel(o, ry, rx, ang, rot, rotate, thr, s, e))
    return out


def _jit(fn: Callable[..., Any]) -> Callable[..., Any]:
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")(fn)


def _jit_inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For small per-pixel helpers: inlined into the caller (a call per pixel costs more than the work)."""
    if numba is None:  # pragma: no cover
        return fn
    return numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy", inline="always")(fn)


@_jit
def _fade(t: np.float32) -> np.float32:
    f = t * t * t * (t * (t * np.float32(6) - np.float32(15)) + np.float32(10))
    # the torch code flushes these for the speed of its matrix product; same values here
    if f < np.float32(1e-12):
        return np.float32(0)
    if f > np.float32(1 - 1e-7):
        return np.float32(1)
    return f


@_jit_inline
def _lattice(pixel: int, step: np.float32, res: int) -> tuple[int, int, np.float32, np.float32, np.float32, np.float32]:
    """Lattice coordinate of a pixel centre along one axis: the two (wrapped) cells, the
    fade weight t and 1 - t, and the offsets from both cells."""
    v = (np.float32(pixel) + np.float32(0.5)) * step
    j = math.floor(v)
    t = _fade(v - np.float32(j))
    return j % res, (j + 1) % res, t, np.float32(1) - t, v - np.float32(j), v - np.float32(j + 1)


@_jit
def _perlin_one(noise: np.ndarray, h: int, w: int, ry: int, rx: int, angles: np.ndarray) -> None:
    """Unrotated noise of one sample into ``noise[:h, :w]``."""
    sqrt2 = np.float32(math.sqrt(2.0))
    # per lattice row i and column x: the x-side sums of the matrix form
    # noise = sum_a wy_a (F[i_a, x] dy_a + E[i_a, x])
    e_tab = np.empty((ry, w), np.float32)
    f_tab = np.empty((ry, w), np.float32)
    step_x = np.float32(rx) / np.float32(w)
    for x in range(w):
        j0, j1, t, w0, dx0, dx1 = _lattice(x, step_x, rx)
        for i in range(ry):
            a0 = angles[i, j0]
            a1 = angles[i, j1]
            f_tab[i, x] = w0 * np.float32(math.sin(a0)) + t * np.float32(math.sin(a1))
            e_tab[i, x] = w0 * np.float32(math.cos(a0)) * dx0 + t * np.float32(math.cos(a1)) * dx1
    step_y = np.float32(ry) / np.float32(h)
    for y in range(h):
        i0, i1, t, w0, dy0, dy1 = _lattice(y, step_y, ry)
        for x in range(w):
            top = f_tab[i0, x] * dy0 + e_tab[i0, x]
            bottom = f_tab[i1, x] * dy1 + e_tab[i1, x]
            noise[y, x] = sqrt2 * (w0 * top + t * bottom)


@_jit
def _perlin_kernel(
    out: np.ndarray,
    res_y: np.ndarray,
    res_x: np.ndarray,
    angles: np.ndarray,
    rotation: np.ndarray,
    rotate: bool,
    threshold: float,
    start: int,
    stop: int,
) -> None:
    _b, h, w = out.shape
    noise, tiled = _noise_buffers(h, w)
    for b in range(start, stop):
        _noise_sample(out[b], noise, tiled, res_y[b], res_x[b], angles[b], rotation[b], rotate)
        if threshold == threshold:  # not NaN: the binary mask of perlin_mask
            _threshold(out[b], np.float32(threshold))


@_jit
def _noise_buffers(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    # the noise tiled periodically with a margin that holds every rotated pixel centre
    # plus one pixel for the bilinear taps (the torch code pads the same way)
    margin = math.ceil(math.sqrt(float(h * h + w * w)) / 2) + 2
    return np.empty((h, w), np.float32), np.empty((h + 2 * margin, w + 2 * margin), np.float32)


@_jit
def _noise_sample(
    out: np.ndarray,
    noise: np.ndarray,
    tiled: np.ndarray,
    ry: int,
    rx: int,
    angles: np.ndarray,
    rotation: np.float32,
    rotate: bool,
) -> None:
    """One sample's noise into ``out`` (H, W), rotated by ``rotation`` radians if ``rotate``."""
    h, w = out.shape
    if not rotate:
        _perlin_one(out, h, w, ry, rx, angles)
        return
    _perlin_one(noise, h, w, ry, rx, angles)
    fw = np.float32(w)
    fh = np.float32(h)
    cos = np.float32(math.cos(rotation))
    sin = np.float32(math.sin(rotation))
    pad_y = math.ceil(float(abs(sin) * fw + abs(cos) * fh) / 2 - h / 2) + 1
    pad_x = math.ceil(float(abs(cos) * fw + abs(sin) * fh) / 2 - w / 2) + 1
    for ty in range(h + 2 * pad_y):
        src = noise[(ty - pad_y) % h]
        dst = tiled[ty]
        k = (-pad_x) % w
        for tx in range(w + 2 * pad_x):
            dst[tx] = src[k]
            k += 1
            if k == w:
                k = 0
    # sample the periodic noise bilinearly at the rotated pixel centres; every tap lies
    # inside ``tiled``, so unsigned flat indices (no negative-index handling) are safe
    ox = fw / np.float32(2) - np.float32(0.5) + np.float32(pad_x)
    oy = fh / np.float32(2) - np.float32(0.5) + np.float32(pad_y)
    stride = np.uint64(tiled.shape[1])
    flat = tiled.reshape(tiled.size)
    one = np.uint64(1)
    for y in range(h):
        ys = np.float32(y) + np.float32(0.5) - fh / np.float32(2)
        base_x = ox - sin * ys
        base_y = oy + cos * ys
        row = out[y]
        for x in range(w):
            xs = np.float32(x) + np.float32(0.5) - fw / np.float32(2)
            sx = cos * xs + base_x
            sy = sin * xs + base_y
            x0 = np.uint32(sx)
            y0 = np.uint32(sy)
            fx = sx - np.float32(x0)
            fy = sy - np.float32(y0)
            i = np.uint64(y0) * stride + np.uint64(x0)
            t0 = flat[i]
            t1 = flat[i + one]
            b0 = flat[i + stride]
            b1 = flat[i + stride + one]
            top = t0 + (t1 - t0) * fx
            bottom = b0 + (b1 - b0) * fx
            row[x] = top + (bottom - top) * fy


@_jit
def _threshold(noise: np.ndarray, threshold: np.float32) -> None:
    """``noise > threshold`` in place; noise that never exceeds it is first rescaled to [-1, 1]."""
    inside = np.empty(0, np.int64)
    _threshold_index(noise, threshold, inside, False)


@_jit
def _threshold_index(noise: np.ndarray, threshold: np.float32, inside: np.ndarray, index: bool) -> int:
    """:func:`_threshold`; with ``index``, also the flat indices of the mask's pixels in
    ``inside`` (their number is returned)."""
    flat = noise.reshape(noise.size)
    low = flat[0]
    peak = flat[0]
    for k in range(flat.size):
        low = min(low, flat[k])
        peak = max(peak, flat[k])
    if peak <= threshold:
        span = max(peak - low, np.float32(1e-12))
        for k in range(flat.size):
            flat[k] = (flat[k] - low) / span * np.float32(2) - np.float32(1)
    count = 0
    for k in range(flat.size):
        if flat[k] > threshold:
            flat[k] = np.float32(1)
            if index:
                inside[count] = k
                count += 1
        else:
            flat[k] = np.float32(0)
    return count


# ---------------------------------------------------------------------- texture augmentation
# operation codes, in the order of anomalysynth.synth.textures._OPS
_GAMMA, _BRIGHT, _SHARP, _HUESAT, _SOLAR, _POSTER, _INVERT, _AUTOC, _EQUAL, _ROTATE = range(10)


def augment_textures_cpu(textures: Tensor, params: dict[str, Tensor]) -> Tensor:
    """:class:`anomalysynth.synth.textures.TextureAugment` on CPU float32 textures."""
    b, c, h, w = textures.shape
    x = _np(textures)
    out = torch.empty(b, c, h, w, dtype=torch.float32)
    o = out.numpy()
    ops, gamma, s = _augment_arrays(params)
    _parallel(b, lambda start, stop: _augment_kernel(x, o, ops, gamma, s, start, stop))
    return out


@_jit_inline
def _requant(v: np.float32) -> np.float32:
    v = min(max(v, np.float32(0)), np.float32(1))
    return np.float32(np.rint(v * np.float32(255))) / np.float32(255)


@_jit_inline
def _level(v: np.float32) -> np.int32:
    v = min(max(v * np.float32(255), np.float32(0)), np.float32(255))
    return np.int32(np.rint(v))


@_jit
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
                levels[ch, k] = _level(flat[ch, k])
        _augment_levels(levels, table, pixels, scratch, tables, padded, ops[b], gamma[b], s[b], padded_index, -1)
        for ch in range(c):
            ov = out[b, ch].reshape(n)
            lv = levels[ch]
            for k in range(n):
                ov[k] = table[ch, lv[k]]


@_jit
def _augment_levels(
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
                    levels[ch, inside[i]] = _level(result[ch, i])
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
                    levels[ch, k] = _level(sv[k])
                for k in range(256):
                    table[ch, k] = np.float32(k) / np.float32(255)
            hist_valid = False


@_jit_inline
def _value(levels: np.ndarray, table: np.ndarray, ch: int, y: int, x: int, w: int) -> np.float32:
    return table[ch, levels[ch, y * w + x]]


@_jit
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
    for ch in range(levels.shape[0]):
        left = _value(levels, table, ch, ya, xa, w) + _value(levels, table, ch, y, xa, w)
        left = left + _value(levels, table, ch, yb, xa, w)
        mid = _value(levels, table, ch, ya, x, w) + _value(levels, table, ch, y, x, w)
        mid = mid + _value(levels, table, ch, yb, x, w)
        right = _value(levels, table, ch, ya, xb, w) + _value(levels, table, ch, y, xb, w)
        right = right + _value(levels, table, ch, yb, xb, w)
        centre = _value(levels, table, ch, y, x, w)
        smooth = (left + mid + right + np.float32(4) * centre) / np.float32(13)
        result[ch, i] = (smooth - centre) * keep + centre


@_jit
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


@_jit
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


@_jit
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


@_jit
def _histogram_table(op: int, hist: np.ndarray, cutoff: np.float32, new: np.ndarray) -> None:
    c = hist.shape[0]
    cdf = np.empty(256, np.float32)
    for ch in range(c):
        total = np.float32(0)
        for k in range(256):
            total += hist[ch, k]
            cdf[k] = total
        for k in range(256):
            cdf[k] = cdf[k] / total
        if op == _EQUAL:
            for k in range(256):
                new[ch, k] = _requant(cdf[k])
            continue
        lo_level = 255
        for k in range(256):
            if cdf[k] > cutoff:
                lo_level = k
                break
        hi_level = 0
        for k in range(255, -1, -1):
            if cdf[k] < np.float32(1) - cutoff:
                hi_level = k + 1
                break
        lo = np.float32(lo_level) / np.float32(255)
        hi = np.float32(min(hi_level, 255)) / np.float32(255)
        hi = max(hi, lo + np.float32(1) / np.float32(255))
        for k in range(256):
            new[ch, k] = _requant((np.float32(k) / np.float32(255) - lo) / (hi - lo))


@_jit
def _sharpness(x: np.ndarray, out: np.ndarray, factor: np.float32) -> None:
    """PIL's SMOOTH kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 blended with ``factor``, replicate borders."""
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
                smooth = (left + rows[i] + right + np.float32(4) * centre) / np.float32(13)
                out[ch, y, i] = (smooth - centre) * keep + centre


@_jit
def _hue_saturation(x: np.ndarray, out: np.ndarray, hue: np.float32, saturation: np.float32) -> None:
    """:func:`anomalysynth.synth.color.shift_hue_saturation` for one RGB image."""
    _c, h, w = x.shape
    for y in range(h):
        for i in range(w):
            r, g, bl = _hsv_shift(x[0, y, i], x[1, y, i], x[2, y, i], hue, saturation)
            out[0, y, i] = r
            out[1, y, i] = g
            out[2, y, i] = bl


@_jit_inline
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


@_jit_inline
def _hue_weight(sextant: np.float32, opposite: np.float32) -> np.float32:
    d = abs(sextant - opposite)
    return min(max(max(np.float32(2) - d, d - np.float32(4)), np.float32(0)), np.float32(1))


@_jit
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


# ---------------------------------------------------------------------- fused perlin_texture
def perlin_texture_cpu(
    images: Tensor,
    params: dict[str, Tensor],
    threshold: float,
    textures: Tensor | None,
    augment: bool,
    out: Tensor,
    mask: Tensor,
) -> None:
    """:class:`~anomalysynth.synth.perlin_texture.PerlinTextureBlend`'s synthesis in one
    pass per sample: mask, texture (generated from ``params``, or ``textures`` already
    matched to the image channels), augmentation, and the blend at the mask's pixels.

    Writes the blended images into ``out`` (B, C, H, W) and the masks into ``mask``
    (B, 1, H, W), both contiguous CPU float32.
    """
    b, c, h, w = images.shape
    if not (out.is_contiguous() and mask.is_contiguous()) or out.shape != images.shape:
        raise ValueError("perlin_texture_cpu needs contiguous outputs shaped like the images and masks.")
    check_lattice(params["perlin_scale_y"], params["perlin_scale_x"], params["perlin_angles"].shape[-1])
    img = _np(images)
    m_ry = _np(params["perlin_scale_y"].to(torch.int64))
    m_rx = _np(params["perlin_scale_x"].to(torch.int64))
    m_angles = _np(params["perlin_angles"].to(torch.float32))
    m_rot = _np(params["perlin_rotation"].to(torch.float32) * (math.pi / 180))
    opacity = _np(params["opacity"].to(torch.float32))
    grey = _np(params.get("texture_grey", torch.zeros(b, dtype=torch.bool)).to(torch.bool))
    if textures is None:
        t_scale = _np(params["tex_scale"].to(torch.int64))
        t_angles = _np(params["tex_angles"].to(torch.float32))
        t_colour = _np(torch.cat([params["tex_base"].float(), params["tex_amplitude"].float()], dim=1))
        given = np.zeros((1, c, 1, 1), np.float32)
    else:
        t_scale = np.ones(b, np.int64)
        t_angles = np.zeros((b, 1, 1), np.float32)
        t_colour = np.zeros((b, 6), np.float32)
        given = _np(textures.to(torch.float32))
    if augment:
        ops, gamma, s = _augment_arrays(params)
    else:
        ops, gamma, s = np.zeros((b, 0), np.int64), np.zeros((b, 3), np.float32), np.zeros((b, 10), np.float32)
    o, m = out.numpy(), mask.view(b, h, w).numpy()
    thr = np.float32(threshold)
    generated = textures is None

    def run(i: int, work: tuple) -> None:
        _perlin_texture_kernel(
            img, o, m, m_ry, m_rx, m_angles, m_rot, thr, generated, t_scale, t_angles, t_colour,
            given, grey, augment, ops, gamma, s, opacity, i, *work,
        )  # fmt: skip

    _parallel_samples(b, lambda: _texture_work(c, h, w), (c, h, w), run)


def _texture_work(c: int, h: int, w: int) -> tuple:
    """The fused kernel's work arrays for (C, H, W) images."""
    n = h * w
    noise, tiled = _noise_buffers(h, w)
    return (
        noise,
        tiled,  # the noise tiled with the margin rotations need
        np.empty((h, w), np.float32),  # texture noise
        np.empty((c, n), np.int32),  # levels
        np.empty((c, n), np.float32),  # values
        np.empty((c, h, w), np.float32),  # pixels
        np.empty((c, h, w), np.float32),  # scratch
        np.empty((c, 256), np.float32),  # table
        np.empty((4, c, 256), np.float32),  # histogram tables
        np.empty(n, np.int64),  # the mask's pixels
        np.zeros((c, h + 2, w + 2), np.float32),  # rotation, zero border
    )


def _augment_arrays(params: dict[str, Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return _np(params["aug_ops"].to(torch.int64)), _np(params["aug_gamma"].to(torch.float32)), _np(scalars)


@_jit
def _perlin_texture_kernel(
    images: np.ndarray,
    out: np.ndarray,
    mask: np.ndarray,
    m_ry: np.ndarray,
    m_rx: np.ndarray,
    m_angles: np.ndarray,
    m_rot: np.ndarray,
    threshold: np.float32,
    generated: bool,
    t_scale: np.ndarray,
    t_angles: np.ndarray,
    t_colour: np.ndarray,
    given: np.ndarray,
    grey: np.ndarray,
    augment: bool,
    ops: np.ndarray,
    gamma: np.ndarray,
    s: np.ndarray,
    opacity: np.ndarray,
    b: int,
    noise: np.ndarray,
    tiled: np.ndarray,
    tex_noise: np.ndarray,
    levels: np.ndarray,
    values: np.ndarray,
    pixels: np.ndarray,
    scratch: np.ndarray,
    table: np.ndarray,
    tables: np.ndarray,
    inside: np.ndarray,
    padded: np.ndarray,
) -> None:
    """Sample ``b``; the arrays after it are work space (see :func:`_texture_work`)."""
    _b, c, h, w = images.shape
    n = h * w
    m = mask[b]
    _noise_sample(m, noise, tiled, m_ry[b], m_rx[b], m_angles[b], m_rot[b], True)
    # the mask, and its pixels: only they are blended
    count = _threshold_index(m, threshold, inside, True)
    # the texture, as 8-bit levels (augmented) or as values
    # texture channels: one for a grey texture (written to every image channel)
    ct = 1 if generated and grey[b] else c
    if generated:
        _perlin_one(tex_noise, h, w, t_scale[b], t_scale[b], t_angles[b])
        _colour_texture(tex_noise.reshape(n), t_colour[b], levels[:ct] if augment else None, values[:ct])
        source = values
    else:
        source = given[b].reshape(c, n)
        if augment:
            for ch in range(c):
                for k in range(n):
                    levels[ch, k] = _level(source[ch, k])
    if augment:
        work = (levels[:ct], table[:ct], pixels[:ct], scratch[:ct], tables[:, :ct], padded[:ct])
        _augment_levels(*work, ops[b], gamma[b], s[b], inside, count)
    # A = I outside the mask and lerp(I, P, opacity) inside (torch.lerp's formula)
    weight = opacity[b]
    small = abs(weight) < np.float32(0.5)
    for ch in range(c):
        src = images[b, ch].reshape(n)
        dst = out[b, ch].reshape(n)
        dst[:] = src
        tc = 0 if ct == 1 else ch
        for i in range(count):
            k = inside[i]
            a = src[k]
            t = table[tc, levels[tc, k]] if augment else source[tc, k]
            if small:
                dst[k] = a + weight * (t - a)
            else:
                dst[k] = t - (t - a) * (np.float32(1) - weight)


@_jit
def _colour_texture(noise: np.ndarray, colour: np.ndarray, levels: np.ndarray | None, values: np.ndarray) -> None:
    """Generated texture ``clamp(base_c + amplitude_c * noise, 0, 1)`` (grey for one channel),
    as 8-bit ``levels`` when given, else as ``values``; branch-free inner loops."""
    c = values.shape[0]
    n = noise.size
    zero = np.float32(0)
    one = np.float32(1)
    if c == 3:
        for ch in range(3):
            amp = colour[3 + ch]
            base = colour[ch]
            if levels is not None:
                lv = levels[ch]
                for k in range(n):
                    lv[k] = _level(min(max(noise[k] * amp + base, zero), one))
            else:
                vv = values[ch]
                for k in range(n):
                    vv[k] = min(max(noise[k] * amp + base, zero), one)
        return
    grey = values[0]
    for k in range(n):
        v = noise[k]
        r = min(max(v * colour[3] + colour[0], zero), one)
        g = min(max(v * colour[4] + colour[1], zero), one)
        bl = min(max(v * colour[5] + colour[2], zero), one)
        grey[k] = r * np.float32(0.299) + g * np.float32(0.587) + bl * np.float32(0.114)
    if levels is not None:
        lv = levels[0]
        for k in range(n):
            lv[k] = _level(grey[k])


# ---------------------------------------------------------------------- grey images
def channels_equal_cpu(images: Tensor) -> Tensor:
    """(B,) bool: whether each (C, H, W) image has all channels equal; stops at the first
    pixel that differs (a colour image costs next to nothing)."""
    b = images.shape[0]
    out = np.zeros(b, np.bool_)
    _channels_equal(_np(images), out)
    return torch.from_numpy(out)


@_jit
def _channels_equal(images: np.ndarray, out: np.ndarray) -> None:
    b, c, h, w = images.shape
    n = h * w
    for i in range(b):
        first = images[i, 0].reshape(n)
        equal = True
        for ch in range(1, c):
            other = images[i, ch].reshape(n)
            for k in range(n):
                if first[k] != other[k]:
                    equal = False
                    break
            if not equal:
                break
        out[i] = equal

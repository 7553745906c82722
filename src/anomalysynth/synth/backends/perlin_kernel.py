"""Perlin noise and the thresholded Perlin mask, one pass per sample.

The same arithmetic as :func:`anomalysynth.synth.perlin.perlin_noise` (the
reference): per lattice row and column the x-side sums of its matrix form, then
the bilinear resampling of the periodic noise at rotated pixel centres.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from anomalysynth.synth.backends.jit import as_array, jit, jit_inline
from anomalysynth.synth.backends.pool import parallel

__all__ = ["noise_buffers", "noise_sample", "perlin_noise_cpu", "perlin_one", "threshold_index"]


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
    ry = as_array(res_y.to(torch.int64))
    rx = as_array(res_x.to(torch.int64))
    ang = as_array(angles.to(torch.float32))
    rot = as_array(torch.zeros(b) if rotation_deg is None else rotation_deg.to(torch.float32) * (math.pi / 180)).astype(
        np.float32
    )
    o = out.numpy()
    rotate = rotation_deg is not None
    thr = math.nan if threshold is None else float(threshold)
    parallel(b, lambda s, e: _perlin_kernel(o, ry, rx, ang, rot, rotate, thr, s, e))
    return out


@jit
def _fade(t: np.float32) -> np.float32:
    f = t * t * t * (t * (t * np.float32(6) - np.float32(15)) + np.float32(10))
    # the torch code flushes these for the speed of its matrix product; same values here
    if f < np.float32(1e-12):
        return np.float32(0)
    if f > np.float32(1 - 1e-7):
        return np.float32(1)
    return f


@jit_inline
def _lattice(pixel: int, step: np.float32, res: int) -> tuple[int, int, np.float32, np.float32, np.float32, np.float32]:
    """Lattice coordinate of a pixel centre along one axis: the two (wrapped) cells, the
    fade weight t and 1 - t, and the offsets from both cells."""
    v = (np.float32(pixel) + np.float32(0.5)) * step
    j = math.floor(v)
    t = _fade(v - np.float32(j))
    return j % res, (j + 1) % res, t, np.float32(1) - t, v - np.float32(j), v - np.float32(j + 1)


@jit
def perlin_one(noise: np.ndarray, h: int, w: int, ry: int, rx: int, angles: np.ndarray) -> None:
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


@jit
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
    noise, tiled = noise_buffers(h, w)
    for b in range(start, stop):
        noise_sample(out[b], noise, tiled, res_y[b], res_x[b], angles[b], rotation[b], rotate)
        if threshold == threshold:  # not NaN: the binary mask of perlin_mask
            _threshold(out[b], np.float32(threshold))


@jit
def noise_buffers(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    # the noise tiled periodically with a margin that holds every rotated pixel centre
    # plus one pixel for the bilinear taps (the torch code pads the same way)
    margin = math.ceil(math.sqrt(float(h * h + w * w)) / 2) + 2
    return np.empty((h, w), np.float32), np.empty((h + 2 * margin, w + 2 * margin), np.float32)


@jit
def noise_sample(
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
        perlin_one(out, h, w, ry, rx, angles)
        return
    perlin_one(noise, h, w, ry, rx, angles)
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


@jit
def _threshold(noise: np.ndarray, threshold: np.float32) -> None:
    """``noise > threshold`` in place; noise that never exceeds it is first rescaled to [-1, 1]."""
    inside = np.empty(0, np.int64)
    threshold_index(noise, threshold, inside, False)


@jit
def threshold_index(noise: np.ndarray, threshold: np.float32, inside: np.ndarray, index: bool) -> int:
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

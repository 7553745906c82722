"""The Perlin-mask alpha blend in one pass per sample: mask, texture, augmentation, blend.

Used by :class:`~anomalysynth.synth.blended.BlendedSynthesizer` when its mask is a
Perlin mask and its blend an alpha blend (``perlin_texture``, ``memseg``, ``sdas``
and any mix of sources): generated textures are made and augmented inside the
kernel, other sources arrive rendered. Only the mask's pixels are blended.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from anomalysynth.synth.backends.jit import as_array, jit
from anomalysynth.synth.backends.perlin_kernel import noise_buffers, noise_sample, perlin_one, threshold_index
from anomalysynth.synth.backends.pool import parallel_samples
from anomalysynth.synth.backends.texture_kernel import augment_arrays, augment_levels, level

__all__ = ["perlin_blend_cpu"]


def perlin_blend_cpu(
    images: Tensor,
    params: dict[str, Tensor],
    threshold: float,
    textures: Tensor | None,
    augment: bool,
    out: Tensor,
    mask: Tensor,
) -> None:
    """A Perlin mask filled with a texture by an alpha blend, in one pass per sample: mask,
    texture (generated from ``params``, or ``textures`` already matched to the image
    channels), augmentation, and the blend at the mask's pixels. The lattice
    resolutions must already be validated.

    Writes the blended images into ``out`` (B, C, H, W) and the masks into ``mask``
    (B, 1, H, W), both contiguous CPU float32.
    """
    b, c, h, w = images.shape
    if not (out.is_contiguous() and mask.is_contiguous()) or out.shape != images.shape:
        raise ValueError("perlin_blend_cpu needs contiguous outputs shaped like the images and masks.")
    img = as_array(images)
    m_ry = as_array(params["perlin_scale_y"].to(torch.int64))
    m_rx = as_array(params["perlin_scale_x"].to(torch.int64))
    m_angles = as_array(params["perlin_angles"].to(torch.float32))
    m_rot = as_array(params["perlin_rotation"].to(torch.float32) * (math.pi / 180))
    opacity = as_array(params["opacity"].to(torch.float32))
    grey = as_array(params.get("texture_grey", torch.zeros(b, dtype=torch.bool)).to(torch.bool))
    if textures is None:
        t_scale = as_array(params["tex_scale"].to(torch.int64))
        t_angles = as_array(params["tex_angles"].to(torch.float32))
        t_colour = as_array(torch.cat([params["tex_base"].float(), params["tex_amplitude"].float()], dim=1))
        given = np.zeros((1, c, 1, 1), np.float32)
    else:
        t_scale = np.ones(b, np.int64)
        t_angles = np.zeros((b, 1, 1), np.float32)
        t_colour = np.zeros((b, 6), np.float32)
        given = as_array(textures.to(torch.float32))
    if augment:
        ops, gamma, s = augment_arrays(params)
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

    parallel_samples(b, lambda: _texture_work(c, h, w), (c, h, w), run)


def _texture_work(c: int, h: int, w: int) -> tuple:
    """The fused kernel's work arrays for (C, H, W) images."""
    n = h * w
    noise, tiled = noise_buffers(h, w)
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


@jit
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
    noise_sample(m, noise, tiled, m_ry[b], m_rx[b], m_angles[b], m_rot[b], True)
    # the mask, and its pixels: only they are blended
    count = threshold_index(m, threshold, inside, True)
    # the texture, as 8-bit levels (augmented) or as values
    # texture channels: one for a grey texture (written to every image channel)
    ct = 1 if generated and grey[b] else c
    if generated:
        perlin_one(tex_noise, h, w, t_scale[b], t_scale[b], t_angles[b])
        _colour_texture(tex_noise.reshape(n), t_colour[b], levels[:ct] if augment else None, values[:ct])
        source = values
    else:
        source = given[b].reshape(c, n)
        if augment:
            for ch in range(c):
                for k in range(n):
                    levels[ch, k] = level(source[ch, k])
    if augment:
        work = (levels[:ct], table[:ct], pixels[:ct], scratch[:ct], tables[:, :ct], padded[:ct])
        augment_levels(*work, ops[b], gamma[b], s[b], inside, count)
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


@jit
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
                    lv[k] = level(min(max(noise[k] * amp + base, zero), one))
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
            lv[k] = level(grey[k])

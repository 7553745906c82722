"""DRAEM's texture operations against independent references: PIL's ImageOps and
ImageEnhance (which imgaug's ``pillike`` operations call), colorsys and numpy."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from anomalysynth.synth.augment import TextureAugment

GAMMA, BRIGHTNESS, SHARPNESS, HUE_SATURATION, SOLARIZE, POSTERIZE, INVERT, AUTOCONTRAST, EQUALIZE, ROTATE = range(10)
NAMES = ["gamma", "brightness", "sharpness", "hue_saturation", "solarize", "posterize", "invert", "autocontrast"]
NAMES += ["equalize", "rotate"]


def smooth_images(n: int, channels: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    """8-bit-level images with some spatial structure (so sharpness and rotation matter)."""
    x = torch.nn.functional.avg_pool2d(
        torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)), 3, 1, 1
    )
    return (x * 255).round() / 255


def params_for(op: int, n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    params = TextureAugment().sample([torch.Generator().manual_seed(seed + i) for i in range(n)])
    params["aug_ops"] = torch.full((n, 1), op)  # one operation
    params["aug_solarize_p"] = torch.ones(n, dtype=torch.bool)
    return params


def to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def from_pil(image: Image.Image) -> np.ndarray:
    array = np.asarray(image).astype(np.int64)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def pil_reference(op: int, image: torch.Tensor, p: dict[str, float]) -> np.ndarray:
    """(C, H, W) int levels of one operation applied by PIL or numpy to one image."""
    levels = (image.numpy() * 255).round().astype(np.int64)
    pil = to_pil(image)
    if op == GAMMA:
        gamma = np.asarray(p["aug_gamma"][: image.shape[0]]).reshape(-1, 1, 1)
        return np.rint((levels / 255) ** gamma * 255).astype(np.int64)
    if op == BRIGHTNESS:
        return np.clip(np.rint((levels / 255 * p["aug_mul"] + p["aug_add"]) * 255), 0, 255).astype(np.int64)
    if op == SHARPNESS:
        return from_pil(ImageEnhance.Sharpness(pil).enhance(p["aug_sharpness"]))
    if op == HUE_SATURATION:
        if image.shape[0] == 1:
            return levels
        out = np.empty_like(levels)
        for y in range(levels.shape[1]):
            for x in range(levels.shape[2]):
                h, s, v = colorsys.rgb_to_hsv(*(levels[:, y, x] / 255))
                s = min(max(s + p["aug_saturation"], 0.0), 1.0)
                out[:, y, x] = np.rint(np.asarray(colorsys.hsv_to_rgb((h + p["aug_hue"]) % 1.0, s, v)) * 255)
        return out
    if op == SOLARIZE:
        return from_pil(ImageOps.solarize(pil, threshold=math.ceil(p["aug_solarize_threshold"] * 255 - 1e-4)))
    if op == POSTERIZE:
        return from_pil(ImageOps.posterize(pil, int(p["aug_posterize_bits"])))
    if op == INVERT:
        return from_pil(ImageOps.invert(pil))
    if op == AUTOCONTRAST:
        return from_pil(ImageOps.autocontrast(pil, cutoff=p["aug_autocontrast_cutoff"] * 100))
    if op == EQUALIZE:
        return from_pil(ImageOps.equalize(pil))
    return numpy_rotation(levels / 255, p["aug_rotation"])


def numpy_rotation(image: np.ndarray, degrees: float) -> np.ndarray:
    """Bilinear rotation about the image centre, zeros outside: output pixel centre (x, y)
    reads the source at the centre-relative point rotated by ``degrees``."""
    _, h, w = image.shape
    theta = math.radians(degrees)
    out = np.zeros_like(image)
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    for y in range(h):
        for x in range(w):
            xs, ys = x + 0.5 - w / 2, y + 0.5 - h / 2
            sx = math.cos(theta) * xs - math.sin(theta) * ys + w / 2 - 0.5
            sy = math.sin(theta) * xs + math.cos(theta) * ys + h / 2 - 0.5
            if not (-1 < sx < w and -1 < sy < h):
                continue
            x0, y0 = math.floor(sx), math.floor(sy)
            fx, fy = sx - x0, sy - y0
            tap = padded[:, y0 + 1 : y0 + 3, x0 + 1 : x0 + 3]
            out[:, y, x] = (tap[:, 0, 0] * (1 - fx) * (1 - fy) + tap[:, 0, 1] * fx * (1 - fy)) + (
                tap[:, 1, 0] * (1 - fx) * fy + tap[:, 1, 1] * fx * fy
            )
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.int64)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("op", range(10), ids=NAMES)
def test_each_operation_matches_an_independent_reference(op: int, channels: int) -> None:
    n = 6
    images = smooth_images(n, channels, size=16 if op == HUE_SATURATION else 24, seed=op)
    params = params_for(op, n, seed=10 * op)
    out = TextureAugment()(images, params)
    for i in range(n):
        p = {k: v[i].tolist() if v[i].ndim else v[i].item() for k, v in params.items()}
        expected = pil_reference(op, images[i], p)
        got = (out[i].numpy() * 255).round().astype(np.int64)
        diff = np.abs(got - expected)
        # PIL rounds its intermediate images to 8 bits, the tables do not: one level at rounding edges
        assert diff.max() <= 1, (op, i, p, int(diff.max()))
        # (sharpness: PIL rounds the smoothed image before blending; autocontrast: PIL's cut is
        # int(n * percent // 100), which can differ by one pixel from floor(n * fraction))
        assert (diff > 0).mean() < {SHARPNESS: 0.5, AUTOCONTRAST: 0.05}.get(op, 0.02), (op, i, float((diff > 0).mean()))


def test_three_operations_in_sequence_match_the_references_applied_one_after_another() -> None:
    n = 30
    images = smooth_images(n, 3, size=16, seed=99)
    augment = TextureAugment()
    params = augment.sample([torch.Generator().manual_seed(100 + i) for i in range(n)])
    out = augment(images, params)
    off = []
    for i in range(n):
        p = {k: v[i].tolist() if v[i].ndim else v[i].item() for k, v in params.items()}
        x = images[i]
        for op in params["aug_ops"][i].tolist():
            if op == SOLARIZE and not p["aug_solarize_p"]:
                continue
            x = torch.from_numpy(pil_reference(op, x, p)).float() / 255
        diff = ((out[i] - x).abs() * 255).round()
        off.append(float((diff > 1).float().mean()))
        # a one-level rounding difference is stretched by a later autocontrast or equalize,
        # but the bulk of every image agrees to a level
        assert diff.median() <= 1, (i, params["aug_ops"][i].tolist())
    assert sum(off) / n < 0.05, off


def test_operations_are_drawn_three_distinct_per_sample_and_in_their_ranges() -> None:
    params = TextureAugment().sample([torch.Generator().manual_seed(i) for i in range(500)])
    ops = params["aug_ops"]
    assert ops.shape == (500, 3) and all(len(set(row)) == 3 for row in ops.tolist())
    assert set(ops.flatten().tolist()) == set(range(10))
    assert ((params["aug_gamma"] >= 0.5) & (params["aug_gamma"] <= 2)).all()
    assert ((params["aug_rotation"] >= -45) & (params["aug_rotation"] <= 45)).all()
    assert ((params["aug_posterize_bits"] >= 1) & (params["aug_posterize_bits"] <= 8)).all()
    assert 0.4 < params["aug_solarize_p"].float().mean() < 0.6

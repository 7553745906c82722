"""The one place that chooses between the compiled kernels and the torch reference.

Every synthesizer part calls these functions; they run the compiled CPU kernels of
:mod:`anomalysynth.synth.backends` when :func:`kernels_enabled` says so and the
torch reference otherwise. The reference modules (:mod:`~anomalysynth.synth.perlin`,
:mod:`~anomalysynth.synth.augment`, :mod:`~anomalysynth.synth.textures`) import
nothing compiled and can be called directly on any device.

``ANOMALYSYNTH_KERNELS=0`` switches the kernels off. Without numba, or with the
``backends`` package removed, everything runs on the reference.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from anomalysynth.synth import perlin
from anomalysynth.synth.augment import TextureAugment

__all__ = [
    "augment_textures",
    "channels_equal",
    "kernels_enabled",
    "perlin_blend_into",
    "perlin_noise",
    "perlin_noise_mask",
]

try:
    from anomalysynth.synth import backends as _backends

    _AVAILABLE = _backends.available()
except ImportError:  # pragma: no cover - the compiled backend is optional
    _AVAILABLE = False


def kernels_enabled(*tensors: Tensor) -> bool:
    """True when the compiled kernels take these tensors: numba present, not switched off, CPU float32."""
    if not _AVAILABLE or os.environ.get("ANOMALYSYNTH_KERNELS", "1") == "0":
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def perlin_noise(
    size: tuple[int, int], res_y: Tensor, res_x: Tensor, angles: Tensor, rotation_deg: Tensor | None = None
) -> Tensor:
    """:func:`anomalysynth.synth.perlin.perlin_noise`, compiled on CPU."""
    if not kernels_enabled(angles):
        return perlin.perlin_noise(size, res_y, res_x, angles, rotation_deg)
    from anomalysynth.synth.backends.perlin_kernel import perlin_noise_cpu

    perlin.check_lattice(res_y, res_x, angles.shape[-1])
    return perlin_noise_cpu(size, res_y, res_x, angles, rotation_deg)


def perlin_noise_mask(
    size: tuple[int, int],
    res_y: Tensor,
    res_x: Tensor,
    angles: Tensor,
    rotation_deg: Tensor | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """:func:`anomalysynth.synth.perlin.perlin_noise_mask`; compiled on CPU, where each
    sample is thresholded while its noise is in cache."""
    if not kernels_enabled(angles):
        return perlin.perlin_noise_mask(size, res_y, res_x, angles, rotation_deg, threshold)
    from anomalysynth.synth.backends.perlin_kernel import perlin_noise_cpu

    perlin.check_lattice(res_y, res_x, angles.shape[-1])
    return perlin_noise_cpu(size, res_y, res_x, angles, rotation_deg, threshold=threshold).unsqueeze(1)


def augment_textures(augment: TextureAugment, textures: Tensor, params: dict[str, Tensor]) -> Tensor:
    """``augment(textures, params)``, compiled on CPU."""
    if not kernels_enabled(textures):
        return augment(textures, params)
    from anomalysynth.synth.backends.texture_kernel import augment_textures_cpu

    return augment_textures_cpu(textures, {k: v.cpu() for k, v in params.items() if k.startswith("aug_")})


def channels_equal(images: Tensor) -> Tensor:
    """(B,) bool on CPU: whether each image has all its channels equal (a grey image stored as RGB)."""
    if kernels_enabled(images):
        from anomalysynth.synth.backends.channels import channels_equal_cpu

        return channels_equal_cpu(images)
    return (images[:, 1:] == images[:, :1]).flatten(1).all(dim=1).cpu()


def perlin_blend_into(
    images: Tensor,
    params: dict[str, Tensor],
    threshold: float,
    textures: Tensor | None,
    augment: bool,
    image_out: Tensor,
    mask_out: Tensor,
) -> bool:
    """A Perlin mask filled with a texture by an alpha blend, written into the outputs in one
    compiled pass per sample. Returns False (and writes nothing) when the kernels cannot run.

    Args:
        images: (B, C, H, W) contiguous.
        params: the Perlin mask's (``perlin_*``), the blend's (``opacity``) and, with
            ``textures=None``, the generated textures' (``tex_*``, ``texture_grey``) parameters;
            with ``augment``, the augmentation's (``aug_*``).
        threshold: the Perlin mask's threshold.
        textures: (B, C, H, W) rendered textures, or ``None`` to generate them from ``params``.
        augment: augment the textures inside the kernel.
        image_out, mask_out: contiguous (B, C, H, W) and (B, 1, H, W) outputs.
    """
    tensors = (images, image_out, mask_out) if textures is None else (images, image_out, mask_out, textures)
    if not kernels_enabled(*tensors):
        return False
    from anomalysynth.synth.backends.fused import perlin_blend_cpu

    perlin.check_lattice(params["perlin_scale_y"], params["perlin_scale_x"], params["perlin_angles"].shape[-1])
    perlin_blend_cpu(images, params, threshold, textures, augment, image_out, mask_out)
    return True

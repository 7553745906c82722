"""DRAEM's Perlin mask: thresholded Perlin noise at a random lattice scale, rotated."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from anomalysynth.seeding import draw
from anomalysynth.synth import dispatch
from anomalysynth.synth.parts import MaskGenerator
from anomalysynth.synth.perlin import MAX_LATTICE
from anomalysynth.synth.ranges import check_range

__all__ = ["PerlinMask", "render_perlin_mask", "sample_perlin_params"]


class PerlinMask(MaskGenerator):
    """Perlin noise with lattice scale ``2**k`` (``k`` uniform in ``perlin_scale``, separately
    for y and x), rotated by U[``rotation_deg``], thresholded at ``threshold`` (Zavrtanik et
    al., DRAEM, ICCV 2021). A draw whose noise never exceeds the threshold is rescaled
    first, so the mask is never silently empty.

    Args:
        perlin_scale: inclusive range of the exponent k (DRAEM: 0..5).
        threshold: noise threshold.
        rotation_deg: range of the rotation in degrees (DRAEM: -90..90).

    Params: ``perlin_scale_y``, ``perlin_scale_x``, ``perlin_angles``, ``perlin_rotation``.
    """

    def __init__(
        self,
        perlin_scale: tuple[int, int] = (0, 5),
        threshold: float = 0.5,
        rotation_deg: tuple[float, float] = (-90.0, 90.0),
    ) -> None:
        lo, hi = check_range("perlin_scale", perlin_scale, 0, int(math.log2(MAX_LATTICE)))
        self.perlin_scale = (int(lo), int(hi))
        self.threshold = float(threshold)
        self.rotation_deg = check_range("rotation_deg", rotation_deg, -math.inf, math.inf)

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        return sample_perlin_params(generators, self.perlin_scale, self.rotation_deg)

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        return render_perlin_mask(params, images.shape[-2:], self.threshold).to(images.device, images.dtype)


def sample_perlin_params(
    generators: list[torch.Generator], perlin_scale: tuple[int, int], rotation_deg: tuple[float, float]
) -> dict[str, Tensor]:
    """Per-sample Perlin mask parameters: lattice scales, gradient angles, rotation.

    The two scale exponents (uniform integers in ``perlin_scale``) and the rotation come
    from one draw of three uniforms per sample.
    """
    lo, hi = perlin_scale
    u = draw(generators, lambda g: torch.rand(3, generator=g))
    exponents = (lo + u[:, :2] * (hi - lo + 1)).floor_().clamp_(max=hi).long()
    return {
        "perlin_scale_y": 2 ** exponents[:, 0],
        "perlin_scale_x": 2 ** exponents[:, 1],
        "perlin_angles": draw(generators, lambda g: torch.rand(MAX_LATTICE, MAX_LATTICE, generator=g) * (2 * math.pi)),
        "perlin_rotation": u[:, 2] * (rotation_deg[1] - rotation_deg[0]) + rotation_deg[0],
    }


def render_perlin_mask(params: dict[str, Tensor], size: torch.Size | tuple[int, int], threshold: float) -> Tensor:
    """(B, 1, H, W) binary mask from :func:`sample_perlin_params` parameters."""
    return dispatch.perlin_noise_mask(
        (int(size[0]), int(size[1])),
        params["perlin_scale_y"],
        params["perlin_scale_x"],
        params["perlin_angles"],
        params["perlin_rotation"],
        threshold,
    )

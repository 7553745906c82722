"""CutPaste's masks (Li et al., CVPR 2021): where a patch lands, a rectangle or a thin
rotated scar. The patch itself is :class:`~anomalysynth.synth.sources.CutPastePatch`."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from anomalysynth.seeding import log_uniform, uniform
from anomalysynth.synth.parts import MaskGenerator

__all__ = ["CutPasteBoxMask", "CutPasteScarMask", "patch_coordinates"]


class _PatchMask(MaskGenerator):
    """A (rotated) patch of drawn size at a drawn place; strength is its area fraction."""

    #: the 3-way class reported in ``params["cutpaste_class"]`` (1 CutPaste, 2 scar)
    cutpaste_class = 1

    def _patch_size(self, generators: list[torch.Generator], h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        h, w = images.shape[-2:]
        ph, pw, angle = self._patch_size(generators, h, w)
        ph, pw = ph.clamp(1, h), pw.clamp(1, w)
        rad = angle * (math.pi / 180)
        # the bounding box of the rotated patch decides where its centre may go
        bh = (ph * rad.cos().abs() + pw * rad.sin().abs()).clamp(max=h)
        bw = (ph * rad.sin().abs() + pw * rad.cos().abs()).clamp(max=w)
        return {
            "patch_h": ph,
            "patch_w": pw,
            "patch_angle": angle,
            "target_cy": bh / 2 - 0.5 + uniform(generators, 0.0, 1.0) * (h - bh),
            "target_cx": bw / 2 - 0.5 + uniform(generators, 0.0, 1.0) * (w - bw),
            "cutpaste_class": torch.full((len(generators),), self.cutpaste_class, dtype=torch.long),
        }

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        a, b, ph, pw = patch_coordinates(params, images.shape[-2:], images.device)
        inside = (a >= -0.5) & (a < ph - 0.5) & (b >= -0.5) & (b < pw - 0.5)
        return inside.unsqueeze(1).to(images.dtype)

    def strength(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        return (params["patch_h"] * params["patch_w"]).to(images.dtype) / (images.shape[-2] * images.shape[-1])


class CutPasteBoxMask(_PatchMask):
    """A rectangle of ``area_ratio`` of the image, aspect ratio (width / height)
    log-uniform in ``aspect_ratio`` (CutPaste: 2-15 %, [0.3, 1/0.3]).

    Params: ``patch_h``, ``patch_w``, ``patch_angle`` (0), ``target_cy``, ``target_cx``,
    ``cutpaste_class`` (1). Strength: the patch area as a fraction of the image.
    """

    cutpaste_class = 1

    def __init__(
        self, area_ratio: tuple[float, float] = (0.02, 0.15), aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    ):
        if not 0 < area_ratio[0] <= area_ratio[1] <= 1:
            raise ValueError(f"`area_ratio` must be a (min, max) pair within (0, 1]; got {area_ratio}.")
        if not 0 < aspect_ratio[0] <= aspect_ratio[1]:
            raise ValueError(f"`aspect_ratio` must be a positive (min, max) pair; got {aspect_ratio}.")
        self.area_ratio = (float(area_ratio[0]), float(area_ratio[1]))
        self.aspect_ratio = (float(aspect_ratio[0]), float(aspect_ratio[1]))

    def _patch_size(self, generators: list[torch.Generator], h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        area = uniform(generators, *self.area_ratio) * (h * w)
        aspect = log_uniform(generators, *self.aspect_ratio)
        pw = torch.sqrt(area * aspect).round().long()
        ph = torch.sqrt(area / aspect).round().long()
        return ph, pw, torch.zeros(len(generators))


class CutPasteScarMask(_PatchMask):
    """A thin strip, width ``width`` and height ``height`` pixels at ``reference_size``
    (scaled with the image), rotated by U[``rotation_deg``] (CutPaste-Scar: 2-16 x 10-25 px
    at 256 px, -45..45 degrees). Params as :class:`CutPasteBoxMask`, ``cutpaste_class`` 2.
    """

    cutpaste_class = 2

    def __init__(
        self,
        width: tuple[int, int] = (2, 16),
        height: tuple[int, int] = (10, 25),
        rotation_deg: tuple[float, float] = (-45.0, 45.0),
        reference_size: int = 256,
    ) -> None:
        if not 1 <= width[0] <= width[1] or not 1 <= height[0] <= height[1]:
            raise ValueError(f"`width` and `height` must be (min, max) pairs >= 1; got {width}, {height}.")
        self.width = (int(width[0]), int(width[1]))
        self.height = (int(height[0]), int(height[1]))
        self.rotation_deg = (float(rotation_deg[0]), float(rotation_deg[1]))
        self.reference_size = int(reference_size)

    def _patch_size(self, generators: list[torch.Generator], h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        scale = min(h, w) / self.reference_size
        pw = (uniform(generators, self.width[0], self.width[1] + 1).floor() * scale).round().long().clamp_min(1)
        ph = (uniform(generators, self.height[0], self.height[1] + 1).floor() * scale).round().long().clamp_min(1)
        return ph, pw, uniform(generators, *self.rotation_deg)


def patch_coordinates(
    params: dict[str, Tensor], size: torch.Size | tuple[int, int], device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For every pixel, its continuous (row, column) offset inside the unrotated patch (origin
    at the patch's top-left pixel), (B, H, W) each, and the patch sizes (B, 1, 1) as floats."""
    h, w = int(size[0]), int(size[1])
    b = params["patch_h"].shape[0]
    ph = params["patch_h"].to(device).view(b, 1, 1).float()
    pw = params["patch_w"].to(device).view(b, 1, 1).float()
    theta = (params["patch_angle"].to(device).float() * (math.pi / 180)).view(b, 1, 1)
    cy = params["target_cy"].to(device).view(b, 1, 1).float()
    cx = params["target_cx"].to(device).view(b, 1, 1).float()
    dy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1) - cy
    dx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w) - cx
    cos, sin = torch.cos(theta), torch.sin(theta)
    a = cos * dy + sin * dx + (ph - 1) / 2
    bcoord = -sin * dy + cos * dx + (pw - 1) / 2
    return a, bcoord, ph, pw

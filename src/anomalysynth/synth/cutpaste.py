"""CutPaste and CutPaste-Scar (Li et al., CVPR 2021).

A rectangle cut from the image itself, colour-jittered, is pasted elsewhere
(normal CutPaste) or a thin rotated strip is (scar). The paste is an exact
nearest-pixel mapping evaluated for the whole batch at once; the mask is the
pasted region (the reference code returns none). Strength is the patch area as
a fraction of the image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from anomalysynth.seeding import draw, log_uniform, uniform
from anomalysynth.synth.base import Synthesizer, register_synthesizer
from anomalysynth.synth.color import shift_hue_saturation
from anomalysynth.synth.compose import OneOf
from anomalysynth.synth.foreground import to_gray

__all__ = ["CutPaste", "CutPasteScar", "CutPasteUnion", "CUTPASTE_CLASSES"]

#: 3-way class of each sample in ``params["cutpaste_class"]``: 0 normal, 1 CutPaste, 2 scar.
CUTPASTE_CLASSES = ("normal", "cutpaste", "scar")


class _PatchPaste(Synthesizer):
    """Shared machinery: colour jitter, a (rotated) patch copy, its mask."""

    cutpaste_class = 1

    def __init__(
        self,
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"`color_jitter` must lie in [0, 1); got {color_jitter}.")
        self.color_jitter = float(color_jitter)

    def _patch_size(self, generators: list[torch.Generator], h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        h, w = images.shape[-2:]
        ph, pw, angle = self._patch_size(generators, h, w)
        ph, pw = ph.clamp(1, h), pw.clamp(1, w)
        rad = angle * (math.pi / 180)
        # bounding box of the rotated patch decides where its centre may go
        bh = (ph * rad.cos().abs() + pw * rad.sin().abs()).clamp(max=h)
        bw = (ph * rad.sin().abs() + pw * rad.cos().abs()).clamp(max=w)
        j = self.color_jitter
        return {
            "patch_h": ph,
            "patch_w": pw,
            "patch_angle": angle,
            "source_y": (uniform(generators, 0.0, 1.0) * (h - ph + 1).float()).floor().long(),
            "source_x": (uniform(generators, 0.0, 1.0) * (w - pw + 1).float()).floor().long(),
            "target_cy": bh / 2 - 0.5 + uniform(generators, 0.0, 1.0) * (h - bh),
            "target_cx": bw / 2 - 0.5 + uniform(generators, 0.0, 1.0) * (w - bw),
            "jitter": draw(generators, lambda g: 1 - j + 2 * j * torch.rand(3, generator=g)),
            "jitter_hue": uniform(generators, -j, j),
            "cutpaste_class": torch.full((len(generators),), self.cutpaste_class, dtype=torch.long),
        }

    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        b, c, h, w = images.shape
        dev = images.device
        patch_h, patch_w = params["patch_h"].to(dev), params["patch_w"].to(dev)
        patches = self._jitter(
            self._cut(images, params["source_y"].to(dev), params["source_x"].to(dev), patch_h, patch_w), params
        )
        ph, pw = patch_h.view(b, 1, 1).float(), patch_w.view(b, 1, 1).float()
        theta = (params["patch_angle"].float() * (math.pi / 180)).view(b, 1, 1)
        cy, cx = params["target_cy"].view(b, 1, 1).float(), params["target_cx"].view(b, 1, 1).float()
        dy = torch.arange(h, device=dev, dtype=torch.float32).view(1, h, 1) - cy
        dx = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, w) - cx
        cos, sin = torch.cos(theta), torch.sin(theta)
        # offset inside the (unrotated) patch, continuous, origin at its top-left pixel
        a = cos * dy + sin * dx + (ph - 1) / 2
        bcoord = -sin * dy + cos * dx + (pw - 1) / 2
        inside = (a >= -0.5) & (a < ph - 0.5) & (bcoord >= -0.5) & (bcoord < pw - 0.5)
        pm_h, pm_w = patches.shape[-2:]
        row = torch.floor(a + 0.5).long().clamp(0, pm_h - 1)
        col = torch.floor(bcoord + 0.5).long().clamp(0, pm_w - 1)
        index = (row * pm_w + col).view(b, 1, h * w).expand(b, c, h * w)
        pasted = torch.gather(patches.reshape(b, c, pm_h * pm_w), 2, index).view(b, c, h, w)
        mask = inside.unsqueeze(1).to(images.dtype)
        strength = (patch_h * patch_w).to(images.dtype) / (h * w)
        return pasted, mask, strength

    @staticmethod
    def _cut(images: Tensor, sy: Tensor, sx: Tensor, ph: Tensor, pw: Tensor) -> Tensor:
        """(B, C, Hm, Wm) source patches, padded to the largest one by repeating the edge."""
        b, _, h, w = images.shape
        hm, wm = int(ph.max()), int(pw.max())
        rows = torch.arange(hm, device=images.device).view(1, hm)
        cols = torch.arange(wm, device=images.device).view(1, wm)
        ys = (sy.view(b, 1) + rows).clamp(max=h - 1)
        xs = (sx.view(b, 1) + cols).clamp(max=w - 1)
        batch = torch.arange(b, device=images.device).view(b, 1, 1)
        patches = images.permute(0, 2, 3, 1)[batch, ys.view(b, hm, 1), xs.view(b, 1, wm)].permute(0, 3, 1, 2)
        return patches.contiguous()

    def _jitter(self, patches: Tensor, params: dict[str, Tensor]) -> Tensor:
        """torchvision ``ColorJitter`` on each patch: brightness, contrast (around the patch's
        mean grey level), saturation, hue, in that fixed order."""
        if self.color_jitter == 0:
            return patches
        b = patches.shape[0]
        factors = params["jitter"].to(device=patches.device, dtype=patches.dtype)
        x = (patches * factors[:, 0].view(b, 1, 1, 1)).clamp_(0, 1)
        # the mean grey level of each patch alone (not of its padding), reduced over a
        # contiguous copy so the result does not depend on the other patches' sizes
        gray = to_gray(x)
        sizes = list(zip(params["patch_h"].tolist(), params["patch_w"].tolist(), strict=True))
        mean = torch.stack([gray[i, :, :ph, :pw].contiguous().mean() for i, (ph, pw) in enumerate(sizes)])
        mean = mean.view(b, 1, 1, 1)
        x = (mean + factors[:, 1].view(b, 1, 1, 1) * (x - mean)).clamp_(0, 1)
        if x.shape[1] == 3:
            gray = to_gray(x)
            x = (gray + factors[:, 2].view(b, 1, 1, 1) * (x - gray)).clamp_(0, 1)
            x = shift_hue_saturation(x, params["jitter_hue"].to(patches.device))
        return x.clamp_(0, 1)


@register_synthesizer("cutpaste")
class CutPaste(_PatchPaste):
    """Normal CutPaste: a rectangle of 2-15 % of the image area, aspect ratio
    log-uniform in [0.3, 1/0.3], colour-jittered and pasted elsewhere.

    Args:
        area_ratio: range of the patch area as a fraction of the image area.
        aspect_ratio: range of width / height (drawn log-uniformly).
        color_jitter: ColorJitter strength for brightness, contrast, saturation, hue.
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    cutpaste_class = 1

    def __init__(
        self,
        area_ratio: tuple[float, float] = (0.02, 0.15),
        aspect_ratio: tuple[float, float] = (0.3, 1 / 0.3),
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(color_jitter, anomaly_ratio, foreground, foreground_invert)
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


@register_synthesizer("cutpaste_scar")
class CutPasteScar(_PatchPaste):
    """CutPaste-Scar: a thin strip (width 2-16 px, height 10-25 px at 256 px,
    scaled with the image) rotated by -45..45 degrees.

    Args:
        width: range of the strip width in pixels at ``reference_size``.
        height: range of the strip height in pixels at ``reference_size``.
        rotation_deg: range of the rotation.
        reference_size: image size the pixel ranges refer to.
        color_jitter, anomaly_ratio, foreground, foreground_invert: as :class:`CutPaste`.
    """

    cutpaste_class = 2

    def __init__(
        self,
        width: tuple[int, int] = (2, 16),
        height: tuple[int, int] = (10, 25),
        rotation_deg: tuple[float, float] = (-45.0, 45.0),
        reference_size: int = 256,
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(color_jitter, anomaly_ratio, foreground, foreground_invert)
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


@register_synthesizer("cutpaste_union")
class CutPasteUnion(OneOf):
    """CutPaste (Union): each anomalous sample is CutPaste or scar with probability 1/2.

    ``params["cutpaste_class"]`` holds the 3-way class (0 normal, 1 CutPaste, 2 scar)
    for training the paper's 3-way classifier.
    """

    def __init__(
        self,
        color_jitter: float = 0.1,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(
            [CutPaste(color_jitter=color_jitter), CutPasteScar(color_jitter=color_jitter)],
            weights=[0.5, 0.5],
            anomaly_ratio=anomaly_ratio,
            foreground=foreground,
            foreground_invert=foreground_invert,
        )
        self.color_jitter = float(color_jitter)

    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        params = super()._sample(images, generators)
        params["cutpaste_class"] = params["choice"] + 1
        return params

"""NSA, natural synthetic anomalies (Schlueter et al., ECCV 2022).

A rectangular patch cut from another normal image (a ``bank`` folder of training
images; without one, from the image itself, the reference code's ``same`` setting),
resized by a factor ~ N(1, 0.5) clipped to [0.7, 1.3], is Poisson-blended (seamless
cloning with the source's or mixed gradients) at a place centred on the object
(the foreground). One patch, each further one with probability 0.5, up to
``max_patches`` (paper: 3 for objects, 4 for textures).

The label is the paper's logistic function of the local intensity change:
``mask = patch / (1 + exp(-k (d - x0)))`` with ``d`` the median-filtered mean
absolute change over channels, (k, x0) = (20, 1/6); ``hard_mask=True`` gives the
binary patch footprint instead. Strength is the footprint's share of the image.

Each sample is solved on its own rectangles (:func:`poisson_blend_rectangle`, a
direct DST solve), so a sample's output does not depend on the rest of the batch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.base import Synthesizer
from anomalysynth.synth.poisson import poisson_blend_rectangle
from anomalysynth.synth.registry import register_synthesizer
from anomalysynth.synth.textures import TextureFolder, match_channels

__all__ = ["NSA"]

logger = logging.getLogger(__name__)

CLONE_MODES = ("normal", "mixed", "random")


@register_synthesizer("nsa")
class NSA(Synthesizer):
    """Natural synthetic anomalies: Poisson-blended patches from other normal images.

    Args:
        bank: folder of normal training images the patches come from; ``None`` takes
            them from the image itself (logged once).
        half_width: range of the source patch's half-width and half-height as a
            fraction of the image side.
        resize_std: standard deviation of the resize factor around 1.
        resize_bounds: the resize factor is clipped to this range.
        max_patches: patches per image: one, each further one with ``extra_patch_probability``.
        extra_patch_probability: probability of each further patch.
        clone_mode: ``"normal"`` (source gradients), ``"mixed"`` (the larger of source
            and target gradients per edge) or ``"random"`` (either, 50/50 per patch).
        hard_mask: the binary patch footprint as mask instead of the logistic label.
        label_steepness: ``k`` of the logistic label.
        label_midpoint: ``x0`` of the logistic label (a mean absolute change in [0, 1]).
        median_size: side of the median filter applied to the change before the logistic.
        anomaly_ratio, foreground, foreground_invert: see :class:`Synthesizer`.
    """

    needs_foreground = True

    def __init__(
        self,
        bank: str | Path | None = None,
        half_width: tuple[float, float] = (0.05, 0.2),
        resize_std: float = 0.5,
        resize_bounds: tuple[float, float] = (0.7, 1.3),
        max_patches: int = 3,
        extra_patch_probability: float = 0.5,
        clone_mode: str = "normal",
        hard_mask: bool = False,
        label_steepness: float = 20.0,
        label_midpoint: float = 1 / 6,
        median_size: int = 5,
        anomaly_ratio: float = 1.0,
        foreground: str | None = None,
        foreground_invert: bool = False,
    ) -> None:
        super().__init__(anomaly_ratio, foreground, foreground_invert)
        if not 0 < half_width[0] <= half_width[1] <= 0.5:
            raise ValueError(f"`half_width` must be a (min, max) pair within (0, 0.5]; got {half_width}.")
        if not 0 < resize_bounds[0] <= 1 <= resize_bounds[1]:
            raise ValueError(f"`resize_bounds` must be a positive (min, max) pair around 1; got {resize_bounds}.")
        if resize_std < 0:
            raise ValueError(f"`resize_std` must be >= 0; got {resize_std}.")
        if not isinstance(max_patches, int) or max_patches < 1:
            raise ValueError(f"`max_patches` must be an int >= 1; got {max_patches!r}.")
        if not 0 <= extra_patch_probability <= 1:
            raise ValueError(f"`extra_patch_probability` must lie in [0, 1]; got {extra_patch_probability}.")
        if clone_mode not in CLONE_MODES:
            raise ValueError(f"`clone_mode` must be one of {CLONE_MODES}; got {clone_mode!r}.")
        if label_steepness <= 0 or not 0 <= label_midpoint <= 1:
            raise ValueError(
                "Expected `label_steepness` > 0 and `label_midpoint` in [0, 1]; "
                f"got {label_steepness}, {label_midpoint}."
            )
        if not isinstance(median_size, int) or median_size < 1 or median_size % 2 == 0:
            raise ValueError(f"`median_size` must be an odd int >= 1; got {median_size!r}.")
        self.bank = None if bank is None else str(bank)
        self._bank = None if bank is None else TextureFolder(bank)
        if bank is None:
            logger.info("NSA without a `bank` folder takes its patches from the image itself.")
        self.half_width = (float(half_width[0]), float(half_width[1]))
        self.resize_std = float(resize_std)
        self.resize_bounds = (float(resize_bounds[0]), float(resize_bounds[1]))
        self.max_patches = max_patches
        self.extra_patch_probability = float(extra_patch_probability)
        self.clone_mode = clone_mode
        self.hard_mask = bool(hard_mask)
        self.label_steepness = float(label_steepness)
        self.label_midpoint = float(label_midpoint)
        self.median_size = median_size

    # ------------------------------------------------------------------ parameters
    def _sample(self, images: Tensor, generators: list[torch.Generator]) -> dict[str, Tensor]:
        p = self.max_patches

        def slots(low: float, high: float) -> Tensor:
            return draw(generators, lambda g: torch.rand(p, generator=g)) * (high - low) + low

        extra = draw(generators, lambda g: torch.rand(max(p - 1, 1), generator=g)) < self.extra_patch_probability
        # one patch, then each further one while the coin keeps saying yes
        count = 1 + torch.cumprod(extra.long(), dim=1).sum(dim=1) if p > 1 else torch.ones(len(generators))
        resize = draw(generators, lambda g: torch.randn(p, generator=g)) * self.resize_std + 1
        if self.clone_mode == "random":
            mixed = slots(0, 1) < 0.5
        else:
            mixed = torch.full((len(generators), p), self.clone_mode == "mixed")
        params = {
            "num_patches": count.long(),
            "half_h": slots(*self.half_width),
            "half_w": slots(*self.half_width),
            "resize": resize.clamp(*self.resize_bounds),
            "source_y": slots(0, 1),
            "source_x": slots(0, 1),
            "target_u": slots(0, 1),
            "mixed": mixed,
        }
        if self._bank is not None:
            params["source_index"] = (uniform(generators, 0, 1) * len(self._bank)).long().clamp(max=len(self._bank) - 1)
        return params

    # ------------------------------------------------------------------ synthesis
    def _synthesize(self, images: Tensor, params: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        b, c, h, w = images.shape
        sources = images
        if self._bank is not None:
            sources = match_channels(self._bank.load(params["source_index"].cpu(), (h, w)), c).to(images)
        out = torch.empty_like(images)
        mask = images.new_zeros(b, 1, h, w)
        for i in range(b):
            out[i], footprint = self._one(images[i : i + 1], sources[i : i + 1], params, i)
            mask[i] = footprint
        strength = mask.flatten(1).mean(dim=1)
        if not self.hard_mask:
            for i in range(b):
                mask[i] = self._logistic_label(out[i], images[i], mask[i])
        return out, mask, strength

    def _one(self, image: Tensor, source: Tensor, params: dict[str, Tensor], i: int) -> tuple[Tensor, Tensor]:
        """One sample: its patches cloned in turn; returns (image (C, H, W), footprint (1, H, W))."""
        _, _, h, w = image.shape
        result = image
        footprint = image.new_zeros(1, h, w)
        allowed = params["_foreground"][i, 0] > 0.5
        for j in range(int(params["num_patches"][i])):
            # source rectangle, then the destination size after resizing (one pixel ring kept free)
            sh = max(2, round(2 * float(params["half_h"][i, j]) * h))
            sw = max(2, round(2 * float(params["half_w"][i, j]) * w))
            factor = float(params["resize"][i, j])
            dh = min(max(1, round(sh * factor)), h - 2)
            dw = min(max(1, round(sw * factor)), w - 2)
            sy = int(float(params["source_y"][i, j]) * (h - sh + 1))
            sx = int(float(params["source_x"][i, j]) * (w - sw + 1))
            patch = source[..., sy : sy + sh, sx : sx + sw]
            patch = F.interpolate(patch, size=(dh + 2, dw + 2), mode="bilinear", align_corners=False, antialias=True)
            top, left = _place(allowed, dh, dw, float(params["target_u"][i, j]))
            guide = result.clone()
            guide[..., top - 1 : top + dh + 1, left - 1 : left + dw + 1] = patch
            mixed = bool(params["mixed"][i, j])
            result = poisson_blend_rectangle(result, guide, top, left, dh, dw, mixed=mixed).clamp_(0, 1)
            footprint[:, top : top + dh, left : left + dw] = 1
        return result[0], footprint

    def _logistic_label(self, synthetic: Tensor, image: Tensor, footprint: Tensor) -> Tensor:
        """(1, H, W): footprint / (1 + exp(-k (median(mean_c |change|) - x0))).

        Evaluated on the footprint's bounding box only, with the median's margin taken
        from the image (edges replicated, as a filter over the whole image would).
        """
        rows = torch.nonzero(footprint[0].amax(dim=1)).flatten()
        cols = torch.nonzero(footprint[0].amax(dim=0)).flatten()
        if len(rows) == 0:
            return footprint
        h, w = footprint.shape[-2:]
        r = self.median_size // 2
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        ey0, ey1, ex0, ex1 = max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)
        change = (synthetic[:, ey0:ey1, ex0:ex1] - image[:, ey0:ey1, ex0:ex1]).abs().mean(dim=0, keepdim=True)
        if r > 0:
            margins = (r - (x0 - ex0), r - (ex1 - x1), r - (y0 - ey0), r - (ey1 - y1))
            change = F.pad(change[None], margins, mode="replicate")
            windows = F.unfold(change, self.median_size)  # (1, size*size, h*w)
            change = windows.median(dim=1).values.view(1, y1 - y0, x1 - x0)
        label = torch.sigmoid(self.label_steepness * (change - self.label_midpoint))
        out = torch.zeros_like(footprint)
        out[:, y0:y1, x0:x1] = footprint[:, y0:y1, x0:x1] * label
        return out

    def extra_repr(self) -> str:
        return (
            f"bank={self.bank!r}, max_patches={self.max_patches}, clone_mode={self.clone_mode!r}, "
            + super().extra_repr()
        )


def _place(allowed: Tensor, dh: int, dw: int, u: float) -> tuple[int, int]:
    """Top-left of a (dh, dw) rectangle 1 px inside the image, centred on an allowed pixel if any.

    The centre is the ``floor(u * n)``-th of the ``n`` admissible centres (row-major),
    admissible meaning in the foreground and keeping the rectangle inside.
    """
    h, w = allowed.shape
    lo_y, hi_y = 1 + dh // 2, h - 1 - (dh - dh // 2)  # inclusive centre range
    lo_x, hi_x = 1 + dw // 2, w - 1 - (dw - dw // 2)
    window = allowed[lo_y : hi_y + 1, lo_x : hi_x + 1]
    candidates = torch.nonzero(window)
    if len(candidates) == 0:  # no foreground where the patch fits: anywhere
        candidates = torch.nonzero(torch.ones_like(window))
    cy, cx = candidates[min(int(u * len(candidates)), len(candidates) - 1)].tolist()
    return cy + lo_y - dh // 2, cx + lo_x - dw // 2

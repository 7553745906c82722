"""CutPaste's source (Li et al., CVPR 2021): a patch of the image itself, colour-jittered,
moved to where the mask is."""

from __future__ import annotations

import torch
from torch import Tensor

from anomalysynth.seeding import draw, uniform
from anomalysynth.synth.color import shift_hue_saturation
from anomalysynth.synth.foreground import to_gray
from anomalysynth.synth.masks.cutpaste import patch_coordinates
from anomalysynth.synth.parts import AnomalySource

__all__ = ["CutPastePatch"]


class CutPastePatch(AnomalySource):
    """The patch the mask describes (``patch_h`` x ``patch_w``, rotated by ``patch_angle``),
    cut at a random place of the same image, colour-jittered, and laid out so that it lands
    on the mask (nearest-pixel mapping). Needs a CutPaste mask before it.

    Args:
        color_jitter: torchvision ``ColorJitter`` strength for brightness, contrast,
            saturation and hue (CutPaste: 0.1).

    Params: ``source_y``, ``source_x``, ``jitter`` (B, 3), ``jitter_hue``.
    """

    def __init__(self, color_jitter: float = 0.1) -> None:
        if not 0.0 <= color_jitter < 1.0:
            raise ValueError(f"`color_jitter` must lie in [0, 1); got {color_jitter}.")
        self.color_jitter = float(color_jitter)

    def sample(self, images: Tensor, generators: list[torch.Generator], params: dict[str, Tensor]) -> dict[str, Tensor]:
        if "patch_h" not in params:
            raise ValueError("CutPastePatch needs a CutPaste mask (CutPasteBoxMask or CutPasteScarMask) before it.")
        h, w = images.shape[-2:]
        ph, pw = params["patch_h"], params["patch_w"]
        j = self.color_jitter
        return {
            "source_y": (uniform(generators, 0.0, 1.0) * (h - ph + 1).float()).floor().long(),
            "source_x": (uniform(generators, 0.0, 1.0) * (w - pw + 1).float()).floor().long(),
            "jitter": draw(generators, lambda g: 1 - j + 2 * j * torch.rand(3, generator=g)),
            "jitter_hue": uniform(generators, -j, j),
        }

    def render(self, images: Tensor, params: dict[str, Tensor]) -> Tensor:
        b, c, h, w = images.shape
        dev = images.device
        patch_h, patch_w = params["patch_h"].to(dev), params["patch_w"].to(dev)
        patches = self._jitter(
            _cut(images, params["source_y"].to(dev), params["source_x"].to(dev), patch_h, patch_w), params
        )
        a, bcoord, _, _ = patch_coordinates(params, (h, w), dev)
        pm_h, pm_w = patches.shape[-2:]
        row = torch.floor(a + 0.5).long().clamp(0, pm_h - 1)
        col = torch.floor(bcoord + 0.5).long().clamp(0, pm_w - 1)
        index = (row * pm_w + col).view(b, 1, h * w).expand(b, c, h * w)
        return torch.gather(patches.reshape(b, c, pm_h * pm_w), 2, index).view(b, c, h, w)

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

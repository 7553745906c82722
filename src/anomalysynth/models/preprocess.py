"""Shared helper: apply an anomalib module's pre-processing to raw images."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

__all__ = ["pre_process"]


def pre_process(module: Any, images: Tensor, size: Any = None) -> Tensor:
    """Resize + normalise raw (B, C, H, W) images in [0, 1] as the module's pre-processor does.

    anomalib's ``PreProcessor`` transforms ``batch.image`` at batch start; extra
    image fields (``source_image``) and images read outside the loop (AFS) need
    the same transform. ``size`` resizes the result to match another tensor.
    """
    transform = getattr(getattr(module, "pre_processor", None), "transform", None)
    out = transform(images) if transform is not None else images
    if size is not None and tuple(out.shape[-2:]) != tuple(size):
        out = F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
    return out.as_subclass(Tensor)

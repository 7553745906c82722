"""Reference images for AnomalyHybrid: a folder of normal images, loaded on demand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "ReferenceImages"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ReferenceImages:
    """The images below ``folder`` (``train/good`` of an MVTec-style tree if there is one), sorted by path.

    ``load(index, height, width, channels)`` returns a (1, C, H, W) float tensor in [0, 1];
    loaded images are kept in memory per size.
    """

    def __init__(self, folder: str | Path) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise ValueError(f"reference_dir {str(root)!r} is not a folder of normal images.")
        good = root / "train" / "good"
        search = good if good.is_dir() else root
        self.files = sorted(p for p in search.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found under {str(search)!r}.")
        self._cache: dict[tuple[int, int, int, int], Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int, height: int, width: int, channels: int) -> Tensor:
        key = (index, height, width, channels)
        if key not in self._cache:
            with Image.open(self.files[index]) as img:
                resized = img.convert("RGB" if channels == 3 else "L").resize(
                    (width, height), Image.Resampling.BILINEAR
                )
                array = np.asarray(resized, dtype=np.float32) / 255
            tensor = torch.from_numpy(array.copy())
            tensor = tensor.permute(2, 0, 1) if channels == 3 else tensor.unsqueeze(0)
            self._cache[key] = tensor.unsqueeze(0)
        return self._cache[key]

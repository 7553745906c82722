"""Image folders for the realism report: normal images and, in an MVTec-style tree, real defects.

An MVTec-style tree has ``train/good`` (normal), ``test/<defect>/<name>.<ext>`` and
``ground_truth/<defect>/<name>_mask.png``. Any other folder is a plain folder of
normal images (every image below it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from anomalysynth.preview import find_images as find_normal_images
from anomalysynth.synth.textures import IMAGE_EXTENSIONS

__all__ = ["DefectImages", "find_defects", "find_normal_images", "load_masks"]


@dataclass
class DefectImages:
    """Paths of real defect images and of their masks (same order)."""

    images: list[Path]
    masks: list[Path]


def find_defects(folder: str | Path) -> DefectImages:
    """Real defects of an MVTec-style tree that have a mask (none for other folders)."""
    folder = Path(folder)
    images: list[Path] = []
    masks: list[Path] = []
    test = folder / "test"
    if not (folder / "train" / "good").is_dir() or not test.is_dir():
        return DefectImages(images, masks)
    for kind in sorted(p for p in test.iterdir() if p.is_dir() and p.name != "good"):
        for image in sorted(p for p in kind.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
            for candidate in (f"{image.stem}_mask.png", f"{image.stem}.png", image.name):
                mask = folder / "ground_truth" / kind.name / candidate
                if mask.is_file():
                    images.append(image)
                    masks.append(mask)
                    break
    return DefectImages(images, masks)


def load_masks(paths: list[Path], size: int) -> Tensor:
    """(N, 1, size, size) binary masks (nearest resize, positive where > 127)."""
    out = []
    for path in paths:
        with Image.open(path) as img:
            array = np.asarray(img.convert("L").resize((size, size), Image.Resampling.NEAREST)) > 127
        out.append(torch.from_numpy(array.astype(np.float32)).unsqueeze(0))
    return torch.stack(out) if out else torch.empty(0, 1, size, size)

"""Preview grids: source images, synthetic anomalies and mask overlays in one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.files import save_png_atomic
from anomalysynth.synth import Synthesizer, SynthOutput
from anomalysynth.synth.keyed import synthesize_keyed
from anomalysynth.synth.textures import IMAGE_EXTENSIONS

__all__ = ["find_images", "load_images", "preview_grid", "save_png_atomic", "synthesize_preview"]


def find_images(folder: str | Path) -> list[Path]:
    """Normal images of a folder: ``train/good`` of an MVTec-style tree, else every image below it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"Image folder {str(folder)!r} does not exist.")
    good = folder / "train" / "good"
    search = good if good.is_dir() else folder
    files = sorted(p for p in search.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found under {str(search)!r}.")
    return files


def load_images(paths: list[Path], size: int, channels: int = 3, progress: bool = True) -> Tensor:
    """(N, C, size, size) float images in [0, 1]."""
    mode = "RGB" if channels == 3 else "L"
    out = []
    for path in tqdm(paths, desc="loading images", disable=not progress):
        with Image.open(path) as img:
            resized = img.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(resized, dtype=np.float32) / 255
        tensor = torch.from_numpy(array)
        out.append(tensor.permute(2, 0, 1) if channels == 3 else tensor.unsqueeze(0))
    return torch.stack(out)


def synthesize_preview(synthesizer: Synthesizer, images: Tensor, seed: int = 0, progress: bool = True) -> SynthOutput:
    """Synthesize image ``i`` keyed ``i`` with ``seed`` (the keyed generators the training data use)."""
    outs = []
    for i in tqdm(range(images.shape[0]), desc=f"synthesizing ({synthesizer.name})", disable=not progress):
        outs.append(synthesize_keyed(synthesizer, images[i : i + 1], [i], seed, synthesizer.anomaly_ratio))
    return SynthOutput(
        image=torch.cat([o.image for o in outs]),
        mask=torch.cat([o.mask for o in outs]),
        label=torch.cat([o.label for o in outs]),
        strength=torch.cat([o.strength for o in outs]),
        params={k: torch.cat([o.params[k] for o in outs]) for k in outs[0].params} if outs else {},
    )


def preview_grid(images: Tensor, out: SynthOutput) -> Image.Image:
    """Rows: source, synthetic, synthetic with the mask in red; each column labelled."""
    n, _, h, w = images.shape
    rows = [_to_rgb(images), _to_rgb(out.image), _overlay(_to_rgb(out.image), out.mask)]
    gap, header = 2, 14
    canvas = Image.new("RGB", (n * (w + gap) + gap, header + 3 * (h + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for col in range(n):
        x = gap + col * (w + gap)
        draw.text((x + 2, 1), f"y={int(out.label[col])} s={float(out.strength[col]):.2f}", fill=(0, 0, 0))
        for row, batch in enumerate(rows):
            pixels = (batch[col].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            canvas.paste(Image.fromarray(pixels), (x, header + gap + row * (h + gap)))
    return canvas


def _to_rgb(images: Tensor) -> Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def _overlay(images: Tensor, mask: Tensor) -> Tensor:
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    alpha = 0.5 * mask
    return images * (1 - alpha) + red * alpha

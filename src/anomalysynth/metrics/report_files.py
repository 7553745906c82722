"""Files of the realism report: the CSV table, the markdown page, the sample grid and the plots."""

from __future__ import annotations

import csv
import io
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from anomalysynth.files import atomic_write_bytes

__all__ = ["METRIC_DESCRIPTIONS", "sample_strip", "write_report"]

#: what each metric family says (the suffix names the network)
METRIC_DESCRIPTIONS = {
    "is": "Inception score of the synthetic images (confident and varied class predictions; higher = more varied)",
    "is_mask": "Inception score of crops around the anomalies",
    "ic_lpips": "IC-LPIPS: mean perceptual distance between anomalies clustered around the same real image "
    "(higher = more diverse)",
    "ic_lpips_mask": "IC-LPIPS restricted to the anomalous pixels",
    "fid_to_normal": "FID to the real normal images (how far the images moved from normal)",
    "kid_to_normal": "KID to the real normal images",
    "fid_to_defects": "FID to the real defect images (lower = closer to real defects)",
    "kid_to_defects": "KID to the real defect images (lower = closer to real defects)",
    "fid_mask_to_defects": "FID between crops around synthetic and real anomalies",
    "kid_mask_to_defects": "KID between crops around synthetic and real anomalies (lower = more realistic anomalies)",
}


def write_report(
    out: Path, rows: list[dict[str, Any]], folder: Path, settings: Any, num_normal: int, num_defects: int
) -> None:
    """``metrics.csv``, ``report.md``, ``grid.png`` and ``plots.png`` under ``out``."""
    columns = sorted({k for row in rows for k in row["metrics"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["synthesizer", "num_anomalies", "seconds", *columns])
    for row in rows:
        writer.writerow(
            [row["synthesizer"], row["num_anomalies"], row["seconds"], *(row["metrics"].get(c, "") for c in columns)]
        )
    atomic_write_bytes(out / "metrics.csv", buffer.getvalue().encode())
    grid = _grid(out / "samples", [row["synthesizer"] for row in rows])
    if grid is not None:
        atomic_write_bytes(out / "grid.png", grid)
    if rows and columns:
        atomic_write_bytes(out / "plots.png", _plots(rows, columns))
    atomic_write_bytes(out / "report.md", _markdown(rows, columns, folder, settings, num_normal, num_defects).encode())


def sample_strip(images: Tensor, masks: Tensor) -> bytes:
    """PNG bytes: the images on top, the same images with the masks in red below."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    overlay = rgb * (1 - 0.5 * masks) + torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1) * 0.5 * masks
    top = torch.cat(list(rgb), dim=2)
    bottom = torch.cat(list(overlay), dim=2)
    pixels = (torch.cat([top, bottom], dim=1).permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    return _png(Image.fromarray(pixels))


def _grid(samples: Path, names: list[str]) -> bytes | None:
    strips = [(n, Image.open(samples / f"{n}.png").convert("RGB")) for n in names if (samples / f"{n}.png").is_file()]
    if not strips:
        return None
    label_w, gap = 110, 4
    width = label_w + max(s.width for _, s in strips)
    height = sum(s.height + gap for _, s in strips)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    y = 0
    for name, strip in strips:
        draw.text((4, y + strip.height // 2 - 6), name, fill=(0, 0, 0))
        canvas.paste(strip, (label_w, y))
        y += strip.height + gap
    return _png(canvas)


def _plots(rows: list[dict[str, Any]], columns: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in columns if not c.endswith("_std")]
    cols = 3
    lines = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 2.8 * lines), squeeze=False)
    names = [row["synthesizer"] for row in rows]
    for ax, column in zip(axes.flat, shown, strict=False):
        values = [_number(row["metrics"].get(column)) for row in rows]
        colours = ["tab:grey" if n == "real_defects" else "tab:blue" for n in names]
        ax.bar(range(len(names)), [0 if math.isnan(v) else v for v in values], color=colours)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_title(column, fontsize=9)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def _markdown(
    rows: list[dict[str, Any]], columns: list[str], folder: Path, settings: Any, num_normal: int, num_defects: int
) -> str:
    lines = [
        f"# Realism report: {folder.name}",
        "",
        f"Data: `{folder}`: {num_normal} normal images, {num_defects} real defects with masks; "
        f"images at {settings.size} px, {settings.repeats} anomalies per normal image (seed {settings.seed}).",
        f"Feature network: `{settings.feature_network}`; perceptual distance: `{settings.perceptual}`. "
        "Numbers with the suffix `_effnet` are computed in the offline EfficientNet-Lite0's space and are not "
        "comparable with the papers' Inception/LPIPS values.",
        "",
        "Command: `anomalysynth " + " ".join(sys.argv[1:]) + "`" if sys.argv[1:2] == ["evaluate"] else "",
        "",
        "| synthesizer | anomalies | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        values = " | ".join(_format(row["metrics"].get(c)) for c in columns)
        lines.append(f"| {row['synthesizer']} | {row['num_anomalies']} | {values} |")
    lines += ["", "![samples](grid.png)", "", "![metrics](plots.png)", "", "## What the columns mean", ""]
    families = {c.removesuffix("_std").removesuffix("_effnet") for c in columns}
    for family, text in METRIC_DESCRIPTIONS.items():
        if family in families:
            lines.append(f"- `{family}`: {text}.")
    lines += [
        "",
        "`real_defects` measures the real defect images themselves (their IC-LPIPS clusters form around the "
        "normal images): a synthesizer whose numbers sit near that row makes anomalies like the real ones. "
        "FID from fewer images than feature dimensions is strongly biased; KID is unbiased and the better guide "
        "at these sizes.",
        "",
    ]
    return "\n".join(lines)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _format(value: object) -> str:
    number = _number(value)
    if math.isnan(number):
        return "-"
    return f"{number:.4f}" if abs(number) < 10 else f"{number:.1f}"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

"""The realism report: how real and how varied each synthesizer's anomalies are.

:func:`evaluate_synthesizers` synthesizes anomalies on the normal images of a folder
with every named synthesizer, measures them with :class:`GenerationQuality`
(against the normal images and, in an MVTec-style tree with masks, against the
real defects) and writes, under ``out``:

* ``results/<synthesizer>.json``: one file per synthesizer, written atomically and
  skipped on the next run when its settings are unchanged (the run resumes);
* ``samples/<synthesizer>.png``: its first anomalies with the masks in red;
* ``metrics.csv``, ``report.md``, ``grid.png`` and ``plots.png``.

A ``real_defects`` row measures the real defects themselves with the same
metrics: the reference a synthesizer's numbers are read against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from anomalysynth.files import atomic_write_bytes
from anomalysynth.metrics.folders import find_defects, find_normal_images, load_masks
from anomalysynth.metrics.quality import GenerationQuality, ImageSet
from anomalysynth.metrics.report_files import write_report
from anomalysynth.preview import load_images
from anomalysynth.seeding import sample_generator

if TYPE_CHECKING:
    from anomalysynth.synth import Synthesizer

__all__ = ["REAL_DEFECTS", "EvaluationSettings", "evaluate_synthesizers"]

logger = logging.getLogger(__name__)

REAL_DEFECTS = "real_defects"


@dataclass
class EvaluationSettings:
    """What the numbers depend on (a change re-computes every synthesizer).

    Attributes:
        num_images: normal images used (the first ones, sorted by path).
        num_defects: real defect images used (the first ones).
        size: images are resized to size x size.
        repeats: anomalies drawn per normal image (IC-LPIPS needs several per cluster).
        seed: anomaly ``r`` of image ``i`` uses ``sample_generator(seed, "i:r")``.
        channels: 3 (RGB) or 1 (grey).
        feature_network, feature_weights, perceptual, perceptual_weights: see
            :class:`GenerationQuality`.
        kid_subset_size: KID subsets (``None``: the whole sets).
        feature_size: input size of the EfficientNet feature network.
        synth_args: constructor arguments per synthesizer name.
    """

    num_images: int = 64
    num_defects: int = 64
    size: int = 128
    repeats: int = 2
    seed: int = 0
    channels: int = 3
    feature_network: str = "effnet"
    feature_weights: str | None = None
    perceptual: str = "effnet"
    perceptual_weights: str | None = None
    kid_subset_size: int | None = None
    feature_size: int = 224
    synth_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def key(self, folder: Path, synthesizer: str) -> str:
        """A hash of everything that decides one synthesizer's numbers."""
        payload = {k: v for k, v in self.__dict__.items() if k != "synth_args"}
        payload.update(folder=str(folder.resolve()), synthesizer=synthesizer, args=self.synth_args.get(synthesizer))
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def evaluate_synthesizers(
    folder: str | Path,
    synthesizers: Sequence[str],
    out: str | Path,
    settings: EvaluationSettings | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Measure every synthesizer on ``folder``; write the report under ``out``; return its rows."""
    from anomalysynth.synth import create_synthesizer

    settings = settings or EvaluationSettings()
    if settings.repeats < 1 or settings.num_images < 2:
        raise ValueError(
            f"`repeats` must be >= 1 and `num_images` >= 2; got {settings.repeats} and {settings.num_images}."
        )
    folder, out = Path(folder), Path(out)
    results_dir = out / "results"
    normal_paths = find_normal_images(folder)[: settings.num_images]
    defects = find_defects(folder)
    defect_paths, mask_paths = defects.images[: settings.num_defects], defects.masks[: settings.num_defects]
    normal = ImageSet(load_images(normal_paths, settings.size, settings.channels, progress=progress))
    defect_set = None
    if len(defect_paths) >= 2:
        defect_set = ImageSet(
            load_images(defect_paths, settings.size, settings.channels, progress=progress),
            load_masks(mask_paths, settings.size),
        )
    quality: GenerationQuality | None = None
    rows = []
    names = [*synthesizers, *([REAL_DEFECTS] if defect_set is not None else [])]
    for name in tqdm(names, desc="synthesizers", disable=not progress):
        path = results_dir / f"{name}.json"
        key = settings.key(folder, name)
        done = _read_json(path)
        if done is not None and done.get("key") == key:
            rows.append(done)
            continue
        if quality is None:
            quality = GenerationQuality(
                settings.feature_network,
                settings.feature_weights,
                settings.perceptual,
                settings.perceptual_weights,
                kid_subset_size=settings.kid_subset_size,
                crop_size=min(settings.size, 128),
                feature_size=settings.feature_size,
            )
        start = time.perf_counter()
        if name == REAL_DEFECTS:
            assert defect_set is not None
            synthetic = ImageSet(defect_set.images, defect_set.masks)
            values = quality.evaluate(synthetic, normal, centres=normal.images)
        else:
            try:
                synthesizer = create_synthesizer(name, **settings.synth_args.get(name, {}))
            except (ValueError, TypeError, OSError, ImportError) as err:
                logger.warning(
                    "Skipping %s: it cannot be built with %s (%s).", name, settings.synth_args.get(name), err
                )
                continue
            synthetic = _synthesize(synthesizer, normal.images, settings, progress)
            values = quality.evaluate(synthetic, normal, defect_set) if len(synthetic) >= 2 else {}
        row = {
            "synthesizer": name,
            "key": key,
            "num_anomalies": len(synthetic),
            "seconds": round(time.perf_counter() - start, 2),
            "metrics": values,
        }
        _write_samples(out / "samples" / f"{name}.png", synthetic)
        atomic_write_bytes(path, json.dumps(row, indent=1).encode())
        rows.append(row)
    write_report(out, rows, folder, settings, len(normal_paths), len(defect_paths))
    return rows


def _synthesize(synthesizer: Synthesizer, images: Tensor, settings: EvaluationSettings, progress: bool) -> ImageSet:
    """``repeats`` anomalous draws per image (keyed generators); normal outcomes are dropped."""
    outs_image, outs_mask = [], []
    total = images.shape[0] * settings.repeats
    name = getattr(synthesizer, "name", type(synthesizer).__name__)
    with torch.no_grad(), tqdm(total=total, desc=f"synthesizing {name}", disable=not progress, leave=False) as bar:
        for r in range(settings.repeats):
            for i in range(images.shape[0]):
                image = images[i : i + 1]
                generator = sample_generator(settings.seed, f"{i}:{r}")
                params = synthesizer.sample_params(image, generator, anomaly_ratio=1.0)
                result = synthesizer.apply(image, params)
                if int(result.label[0]) == 1:
                    outs_image.append(result.image)
                    outs_mask.append(result.mask)
                bar.update(1)
    if not outs_image:
        return ImageSet(images.new_empty(0, *images.shape[1:]), images.new_empty(0, 1, *images.shape[-2:]))
    return ImageSet(torch.cat(outs_image).clamp(0, 1), (torch.cat(outs_mask) > 0.5).float())


def _write_samples(path: Path, synthetic: ImageSet, count: int = 8) -> None:
    from anomalysynth.metrics.report_files import sample_strip

    if len(synthetic) and synthetic.masks is not None:
        atomic_write_bytes(path, sample_strip(synthetic.images[:count], synthetic.masks[:count]))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None

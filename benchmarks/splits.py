"""Validation and test halves of an MVTec-style folder, as two folders of symbolic links.

Recipes are chosen on the validation half only and reported on the test half. Each
test class (``test/good`` and every ``test/<defect>``) is halved by a seeded
permutation of its sorted file names; the training split and the masks are shared.

    python benchmarks/splits.py --root ../shared/datasets/bsdata --out results/splits/bsdata

``--grow N`` also builds ``<out>/grown``: every training image plus N horizontally
flipped copies of the first ones (PNG), with the test half, for timing a training set
larger than the data set (e.g. 700 BSData images: ``--grow 200``). ``--every K`` also
builds ``<out>/<name>_every<K>``: every K-th training image (sorted) with the whole test
set and masks, an MVTec-style folder of a small training set whose halves are those of
the full set (e.g. 50 of DeepPCB's 400 images: ``--every 8``).
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        os.symlink(target.resolve(), link)


def _training_images(root: Path) -> list[Path]:
    """The files of ``root/train/good``, sorted."""
    return sorted(p for p in (Path(root) / "train" / "good").iterdir() if p.is_file())


def make_halves(root: Path, out: Path, seed: int = 0) -> dict[str, Path]:
    """Build ``out/val`` and ``out/test`` (idempotent); returns both roots."""
    root = Path(root)
    if not (root / "train" / "good").is_dir():
        raise SystemExit(f"{root} is not an MVTec-style folder (no train/good).")
    halves = {"val": Path(out) / "val", "test": Path(out) / "test"}
    for half in halves.values():
        _link(root / "train", half / "train")
    for cls in sorted(p.name for p in (root / "test").iterdir() if p.is_dir()):
        files = sorted(p.name for p in (root / "test" / cls).iterdir() if p.is_file())
        random.Random(f"{seed}|{cls}").shuffle(files)
        cut = len(files) // 2
        for name, chosen in (("val", files[:cut]), ("test", files[cut:])):
            for file in chosen:
                _link(root / "test" / cls / file, halves[name] / "test" / cls / file)
                mask = root / "ground_truth" / cls / f"{Path(file).stem}_mask.png"
                if mask.exists():
                    _link(mask, halves[name] / "ground_truth" / cls / mask.name)
    return halves


def grow(root: Path, test_half: Path, out: Path, extra: int) -> Path:
    """``out``: links to every training image, ``extra`` flipped copies and the test half (idempotent)."""
    from PIL import Image, ImageOps

    images = _training_images(root)
    if not 0 <= extra <= len(images):
        raise SystemExit(f"--grow {extra}: expected 0..{len(images)} (the training images to flip).")
    good = Path(out) / "train" / "good"
    for image in images:
        _link(image, good / image.name)
    for image in images[:extra]:
        target = good / f"flipped_{image.stem}.png"
        if not target.exists():
            partial = target.with_suffix(".part.png")
            ImageOps.mirror(Image.open(image)).save(partial)
            partial.replace(target)  # atomic: a crash leaves no half-written image
    for name in ("test", "ground_truth"):
        _link(Path(test_half) / name, Path(out) / name)
    return Path(out)


def thin(root: Path, out: Path, every: int) -> Path:
    """``out``: links to every ``every``-th training image, the test images and the masks (idempotent)."""
    images = _training_images(root)
    if not 1 <= every <= len(images):
        raise SystemExit(f"--every {every}: expected 1..{len(images)} (the training images).")
    for image in images[::every]:
        _link(image, Path(out) / "train" / "good" / image.name)
    for name in ("test", "ground_truth"):
        _link(Path(root) / name, Path(out) / name)
    return Path(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grow", type=int, default=0, help="flipped training copies added in <out>/grown")
    parser.add_argument("--every", type=int, default=0, help="every K-th training image in <out>/<name>_every<K>")
    args = parser.parse_args()
    halves = make_halves(args.root, args.out, args.seed)
    if args.grow:
        halves["grown"] = grow(args.root, halves["test"], Path(args.out) / "grown", args.grow)
    if args.every:
        halves["thinned"] = thin(args.root, Path(args.out) / f"{args.root.name}_every{args.every}", args.every)
    for name, path in halves.items():
        print(name, path)

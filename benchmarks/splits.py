"""Validation and test halves of an MVTec-style folder, as two folders of symbolic links.

Recipes are chosen on the validation half only and reported on the test half. Each
test class (``test/good`` and every ``test/<defect>``) is halved by a seeded
permutation of its sorted file names; the training split and the masks are shared.

    python benchmarks/splits.py --root ../shared/datasets/bsdata --out results/splits/bsdata
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, path in make_halves(args.root, args.out, args.seed).items():
        print(name, path)

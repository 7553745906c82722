"""Other forms of RealNet's image score, on the maps ``recipe_sweep.py --dump`` saved.

The shipped image score is the plain max of one mixed map,
``max(0.1 p + 0.35 n' + 0.55 g')`` (p the discriminator's probability, n' and g' the
squashed nearest-neighbour and Gaussian distances, r / (1 + r)). This script scores,
on every dump's validation half (they rank) and test half (it reports), a fixed list
of alternatives:

- choice 9's weights (0.2 / 0.3 / 0.5) in the same plain max;
- the shipped weights with a blur of one term (or of all three) before the mix, so the
  max rests on a neighbourhood of that term (PaDiM takes the max of a map blurred with
  sigma 4);
- late fusion: the weighted sum of each term's own max, over a grid of nine weightings.

Run it alone:

    python benchmarks/image_score_variants.py results/dumps/recipe/{deeppcb,bsdata}_s0.pt \
        results/dumps/recipe/{deeppcb,bsdata}_s1.pt
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from score_dumps import squashed

Scorer = Callable[[str, str], torch.Tensor]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dumps", nargs="+", type=Path, help="files written by recipe_sweep.py --dump")
    parser.add_argument(
        "--gaussian",
        default="g0",
        help="the dumps' key of the shipped (stride-2) Gaussian term: g0 in dumps made by the README's command "
        "(--gaussians with levels [4], 16 features), g3 in those regaussian_dumps.py extended",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)

    from torchmetrics.functional.classification import binary_auroc

    from anomalysynth.filters import gaussian_blur

    dumps = {str(p): torch.load(p, weights_only=False) for p in args.dumps}
    cache: dict[tuple[str, str, str, float], torch.Tensor] = {}

    def part(path: str, half: str, key: str, sigma: float) -> torch.Tensor:
        """One term of one half, squashed as it enters the map, blurred by ``sigma`` (0: not)."""
        if (path, half, key, sigma) not in cache:
            value = squashed(dumps[path][half], key)
            cache[path, half, key, sigma] = gaussian_blur(value, sigma) if sigma > 0 else value
        return cache[path, half, key, sigma]

    keys = ("p", "n", args.gaussian)

    def early(w: tuple[float, float, float], s: tuple[float, float, float]) -> Scorer:
        """The max of the mixed map, each term first blurred by its sigma."""

        def score(path: str, half: str) -> torch.Tensor:
            mixed = torch.zeros(())
            for wi, key, si in zip(w, keys, s, strict=True):
                mixed = mixed + wi * part(path, half, key, si)
            return mixed.flatten(1).amax(dim=1)

        return score

    def late(w: tuple[float, float, float]) -> Scorer:
        """The weighted sum of each term's own max."""

        def score(path: str, half: str) -> torch.Tensor:
            total = torch.zeros(())
            for wi, key in zip(w, keys, strict=True):
                total = total + wi * part(path, half, key, 0).flatten(1).amax(dim=1)
            return total

        return score

    shipped = (0.1, 0.35, 0.55)
    variants: dict[str, Scorer] = {
        "shipped (max of 0.1 p + 0.35 n' + 0.55 g')": early(shipped, (0, 0, 0)),
        "choice 9's weights (0.2 / 0.3 / 0.5)": early((0.2, 0.3, 0.5), (0, 0, 0)),
    }
    for sigma in (1, 2, 4):
        variants[f"g' blurred, sigma {sigma}"] = early(shipped, (0, 0, sigma))
    for sigma in (2, 4):
        variants[f"p blurred, sigma {sigma}"] = early(shipped, (sigma, 0, 0))
    for sigma in (1, 2):
        variants[f"all blurred, sigma {sigma}"] = early(shipped, (sigma, sigma, sigma))
    for wp, wn in itertools.product((0.1, 0.2, 0.3), (0.2, 0.35, 0.5)):
        wg = round(1 - wp - wn, 2)
        variants[f"late fusion {wp} / {wn} / {wg}"] = late((wp, wn, wg))

    rows = []
    for name, scorer in variants.items():
        val = [float(binary_auroc(scorer(p, "val"), dumps[p]["val"]["label"])) for p in dumps]
        test = [float(binary_auroc(scorer(p, "test"), dumps[p]["test"]["label"])) for p in dumps]
        rows.append((sum(val) / len(val), name, val, test))
    names = " ".join(Path(p).stem for p in dumps)
    print(f"image AUROC, validation halves (rank) | test halves (report); dumps: {names}")
    for mean, name, val, test in sorted(rows, key=lambda r: -r[0]):
        cells = lambda v: " ".join(f"{x:.4f}" for x in v)  # noqa: E731
        print(f"{name:44s} {cells(val)} mean {mean:.4f} | {cells(test)} mean {sum(test) / len(test):.4f}")


if __name__ == "__main__":
    main()

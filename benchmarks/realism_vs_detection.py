"""Does the realism ranking of the synthesizers agree with the detection they train?

Reads the realism reports of ``anomalysynth evaluate`` (``docs/realism/<set>/metrics.csv``)
and a table of detection results per training source (``docs/realism/detection_by_source.csv``:
``set,seed,synthesizer,image_AUROC,pixel_AUROC,AUPRO``, one RealNet trained on each source
and seed, ``benchmarks/detection_quality.py --seed S --mix '[["<source>", {}]]'``), and
prints, per set, Spearman's rank correlation between every realism metric and every
detection measure averaged over the seeds, then between the seeds' own detection results
(how stable the detection ranking is: a realism metric cannot agree with a ranking
better than the ranking agrees with itself).

Realism metrics where lower means closer to the real defects (FID, KID) are negated,
so a positive rho always means "more realistic, better detector":

    python benchmarks/realism_vs_detection.py
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

#: realism columns and their sign (+1: higher is more realistic / more varied)
REALISM = {
    "kid_mask_to_defects_effnet": -1.0,
    "fid_mask_to_defects_effnet": -1.0,
    "kid_to_defects_effnet": -1.0,
    "ic_lpips_mask_effnet": 1.0,
}
DETECTION = ("image_AUROC", "pixel_AUROC", "AUPRO")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (expected a CSV table; see this script's docstring).")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def seed_of(row: dict[str, str]) -> str:
    """The row's seed; a table without a seed column is one seed, 0."""
    return row.get("seed") or "0"


def mean_by_source(rows: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """Each source's detection measures averaged over its seeds."""
    out: dict[str, dict[str, float]] = {}
    for source in dict.fromkeys(row["synthesizer"] for row in rows):
        mine = [row for row in rows if row["synthesizer"] == source]
        out[source] = {m: sum(float(row[m]) for row in mine) / len(mine) for m in DETECTION}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=Path("docs/realism"))
    parser.add_argument("--detection", type=Path, default=Path("docs/realism/detection_by_source.csv"))
    args = parser.parse_args()
    from scipy.stats import spearmanr

    detection = read_csv(args.detection)
    for name in sorted({row["set"] for row in detection}):
        realism = {row["synthesizer"]: row for row in read_csv(args.reports / name / "metrics.csv")}
        mine = [row for row in detection if row["set"] == name]
        missing = sorted({row["synthesizer"] for row in mine} - set(realism))
        means = {k: v for k, v in mean_by_source(mine).items() if k in realism}
        seeds = sorted({seed_of(row) for row in mine}, key=int)
        print(
            f"\n{name}: {len(means)} sources, seeds {', '.join(seeds)} (detection averaged over the seeds)"
            + (f" (no realism report for {', '.join(missing)})" if missing else "")
        )
        print(f"{'realism metric':28s} " + " ".join(f"{d:>12s}" for d in DETECTION))
        for metric, sign in REALISM.items():
            x = [sign * float(realism[source][metric]) for source in means]
            cells = []
            for measure in DETECTION:
                rho = spearmanr(x, [m[measure] for m in means.values()]).statistic
                cells.append(f"{rho:12.2f}")
            print(f"{metric:28s} " + " ".join(cells))
        by_seed = {
            seed: mean_by_source([r for r in mine if seed_of(r) == seed and r["synthesizer"] in means])
            for seed in seeds
        }
        for a, b in itertools.pairwise(seeds):
            common = [source for source in by_seed[a] if source in by_seed[b]]
            cells = [
                f"{spearmanr([by_seed[a][s][m] for s in common], [by_seed[b][s][m] for s in common]).statistic:12.2f}"
                for m in DETECTION
            ]
            print(f"{f'detection, seed {a} against {b}':28s} " + " ".join(cells) + f"   ({len(common)} sources)")


if __name__ == "__main__":
    main()

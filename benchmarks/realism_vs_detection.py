"""Does the realism ranking of the synthesizers agree with the detection they train?

Reads the realism reports of ``anomalysynth evaluate`` (``docs/realism/<set>/metrics.csv``)
and a table of detection results per training source (``docs/realism/detection_by_source.csv``:
``set,synthesizer,image_AUROC,pixel_AUROC,AUPRO``, one RealNet trained on each source,
``benchmarks/detection_quality.py --mix '[["<source>", {}]]'``), and prints Spearman's
rank correlation between every realism metric and every detection measure, per set.

Realism metrics where lower means closer to the real defects (FID, KID) are negated,
so a positive rho always means "more realistic, better detector":

    python benchmarks/realism_vs_detection.py
"""

from __future__ import annotations

import argparse
import csv
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=Path("docs/realism"))
    parser.add_argument("--detection", type=Path, default=Path("docs/realism/detection_by_source.csv"))
    args = parser.parse_args()
    from scipy.stats import spearmanr

    detection = read_csv(args.detection)
    for name in sorted({row["set"] for row in detection}):
        realism = {row["synthesizer"]: row for row in read_csv(args.reports / name / "metrics.csv")}
        rows = [row for row in detection if row["set"] == name and row["synthesizer"] in realism]
        missing = sorted({row["synthesizer"] for row in detection if row["set"] == name} - set(realism))
        print(f"\n{name}: {len(rows)} sources" + (f" (no realism report for {', '.join(missing)})" if missing else ""))
        print(f"{'realism metric':28s} " + " ".join(f"{d:>12s}" for d in DETECTION))
        for metric, sign in REALISM.items():
            x = [sign * float(realism[row["synthesizer"]][metric]) for row in rows]
            cells = []
            for measure in DETECTION:
                rho = spearmanr(x, [float(row[measure]) for row in rows]).statistic
                cells.append(f"{rho:12.2f}")
            print(f"{metric:28s} " + " ".join(cells))


if __name__ == "__main__":
    main()

"""Sweep RealNet's scoring over the maps ``recipe_sweep.py --dump`` saved, on several sets at once.

``recipe_sweep.py --dump`` keeps, per pixel of both halves of a folder, the
discriminator's probability p, the nearest-neighbour distance n and every extra
Gaussian term g0, g1, ... it was given. Scoring settings change only how those maps
are mixed, so they can be chosen here without training: every image score (the
weights of n and of one Gaussian term in the map the score reads, top k or plain max,
an optional blur before it) and every map (the same weights, smoothed with each
of ``--sigma``; the Gaussian term with each of ``--gaussian-sigma`` where given) is
scored on the **validation** halves of all dumps; the rows are
ranked by their mean over the dumps; the ``--shipped`` settings, the best ``--show``
rows and the best row of every image score and blur are then scored on the test
halves too (they report; they do not choose). Run it alone:

    python benchmarks/score_dumps.py results/dumps/deeppcb_s0.pt results/dumps/bsdata_s0.pt
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import torch


def squashed(data: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """p as it is; a distance r as r / (1 + r), the form each term enters the map in."""
    value = data[key].float()
    return value if key == "p" else value / (1 + value)


def mixed(
    parts: dict[str, torch.Tensor],
    n: float,
    gaussian: str,
    g: float,
    gaussian_parts: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(1 - n - g) p + n n' + g g' over the squashed maps (g' from ``gaussian_parts`` when given:
    the Gaussian term smoothed by its own sigma)."""
    out = (1 - n - g) * parts["p"]
    if n > 0:
        out = out + n * parts["n"]
    if g > 0:
        out = out + g * (parts if gaussian_parts is None else gaussian_parts)[gaussian]
    return out


def image_scores(amap: torch.Tensor, mode: str) -> torch.Tensor:
    """(B,) RealNet's own image score of a "topk" mode (top1: the plain max)."""
    from anomalysynth.models.realnet.scoring import AnomalyScoring

    return AnomalyScoring(score_topk=int(mode[3:])).image_score(amap)


def table_line(label: str, val: list[float], test: list[float], width: int) -> str:
    """One printed row: the setting, its validation values and mean, its test values and mean."""
    cells = lambda values: " ".join(f"{v:{width}.4f}" for v in values)  # noqa: E731
    return f"{label} | {cells(val)} {sum(val) / len(val):8.4f} | {cells(test)} {sum(test) / len(test):8.4f}"


def prepared(data: dict[str, torch.Tensor], sigmas: set[float]) -> dict[float, dict[str, torch.Tensor]]:
    """The squashed maps, blurred by each sigma (the mix is linear in them, so blur first)."""
    from anomalysynth.filters import gaussian_blur

    keys = [k for k in data if k in ("p", "n") or (k.startswith("g") and k[1:].isdigit())]
    raw = {k: squashed(data, k) for k in keys}
    return {s: {k: gaussian_blur(v, s) if s > 0 else v for k, v in raw.items()} for s in sigmas}


def floats(text: str) -> list[float]:
    """``"0.1,0.2"`` -> [0.1, 0.2]."""
    return [float(v) for v in text.split(",")]


def shipped_settings(args: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ``--shipped`` image scores and ``--shipped-map`` maps (sigma 4 where not given; the
    Gaussian's sigma that of the map where not given)."""
    shipped = [tuple(v) for v in json.loads(args.shipped)]
    shipped_map = []
    for v in json.loads(args.shipped_map):
        n, gname, g, sigma = (*v, 4.0)[:4]
        shipped_map.append((n, gname, g, float(sigma), float(v[4]) if len(v) > 4 else float(sigma)))
    return shipped, shipped_map


def image_grid(args: Any, gaussians: list[str], sigmas: set[float]) -> list[tuple[Any, ...]]:
    """Every image score (n, Gaussian, its weight, top k mode, blur); g = 0 once, under the first Gaussian."""
    first = (gaussians or ["g0"])[0]
    return [
        (n, gname, g, mode, s)
        for n, gname, g, mode, s in itertools.product(
            floats(args.n_weights), gaussians or ["g0"], floats(args.g_weights), args.modes.split(","), sorted(sigmas)
        )
        if n + g <= 1 + 1e-9 and not (g == 0 and gname != first)
    ]


def map_grid(args: Any, gaussians: list[str], sigmas: list[float]) -> list[tuple[Any, ...]]:
    """Every map setting (n, Gaussian, its weight, sigma, the Gaussian's sigma); g = 0 once, under
    the first Gaussian and at the map's sigma."""
    first = (gaussians or ["g0"])[0]
    own = floats(args.gaussian_sigma) if args.gaussian_sigma else [None]
    return [
        (n, gname, g, sigma, sigma if gsigma is None or g == 0 else gsigma)
        for n, gname, g, sigma, gsigma in itertools.product(
            floats(args.map_n_weights), gaussians or ["g0"], floats(args.map_g_weights), sigmas, own
        )
        if n + g <= 1 + 1e-9 and not (g == 0 and (gname != first or gsigma not in (None, own[0])))
    ]


def image_auroc(
    parts: dict[float, dict[str, torch.Tensor]], half: dict[str, torch.Tensor], setting: tuple[Any, ...]
) -> float:
    """Image AUROC of one image score on one half of a dump (``parts``: its :func:`prepared` maps)."""
    from torchmetrics.functional.classification import binary_auroc

    n, gname, g, mode, s = setting
    scores = image_scores(mixed(parts[s], n, gname, g), mode)
    return float(binary_auroc(scores, half["label"]))


def map_quality(
    parts: dict[float, dict[str, torch.Tensor]],
    half: dict[str, torch.Tensor],
    setting: tuple[Any, ...],
    aupro: bool = True,
) -> list[float]:
    """Pixel AUROC (and AUPRO) of one map on one half of a dump (``parts``: its :func:`prepared` maps)."""
    from anomalib.metrics.aupro import _AUPRO
    from torchmetrics.functional.classification import binary_auroc

    n, gname, g, sigma, gsigma = setting
    amap = mixed(parts[sigma], n, gname, g, parts[gsigma])
    out = [float(binary_auroc(amap.flatten(), half["mask"].flatten()))]
    if aupro:
        metric = _AUPRO(fpr_limit=0.3)
        metric.update(amap[:, 0], half["mask"])
        out.append(float(metric.compute()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dumps", nargs="+", type=Path, help="files written by recipe_sweep.py --dump")
    parser.add_argument("--n-weights", default="0.3,0.4,0.5,0.6,0.7", help="image score: weights of n")
    parser.add_argument(
        "--g-weights", default="0,0.1,0.15,0.2,0.25,0.3,0.35,0.4", help="image score: weights of the Gaussian"
    )
    parser.add_argument("--gaussians", default=None, help="Gaussian terms to try, e.g. g0,g2 (default: all)")
    parser.add_argument("--modes", default="top1,top10,top50,top200", help="top k means (top1: the max)")
    parser.add_argument("--score-sigmas", default="0,4", help="blur of the map before the image score")
    parser.add_argument("--map-n-weights", default="0,0.05,0.1,0.15", help="map: weights of n")
    parser.add_argument("--map-g-weights", default="0,0.05,0.1,0.15,0.2,0.25,0.3", help="map: weights of the Gaussian")
    parser.add_argument("--sigma", default="4", help="the map's smoothing, one or several (e.g. 2,3,4,6)")
    parser.add_argument(
        "--gaussian-sigma",
        default=None,
        help="the Gaussian term's own smoothing in the map, one or several (default: the map's --sigma)",
    )
    parser.add_argument("--show", type=int, default=12)
    parser.add_argument(
        "--shipped",
        default='[[0.4, "g0", 0.4, "top1", 0]]',
        help="image scores shown first, a JSON list of [n, Gaussian (g0: recipe_sweep's first), weight, mode, blur]",
    )
    parser.add_argument(
        "--shipped-map",
        default='[[0.05, "g0", 0.15, 4]]',
        help="maps shown first, a JSON list of [n, Gaussian, weight, sigma(, the Gaussian's sigma)]",
    )
    parser.add_argument("--no-aupro", action="store_true", help="pixel AUROC only (AUPRO is the slow part)")
    parser.add_argument(
        "--select-on",
        default=None,
        help="a synthetic half of the dumps (recipe_sweep.py --synthetic-val: synth0, synth1, ...): choose the "
        "image score and the map of each dump on it alone, as a user without real defects could, and show the "
        "real halves of that choice beside the shipped settings",
    )
    args = parser.parse_args()

    torch.set_num_threads(2)
    dumps = {p.stem: torch.load(p, weights_only=False) for p in args.dumps}
    gaussians = sorted({k for d in dumps.values() for k in d["val"] if k.startswith("g") and k[1:].isdigit()})
    if args.gaussians:
        gaussians = [g for g in gaussians if g in args.gaussians.split(",")]
    score_sigmas = set(floats(args.score_sigmas))
    map_sigmas = floats(args.sigma)
    own_sigmas = set(floats(args.gaussian_sigma)) if args.gaussian_sigma else set()
    shipped, shipped_map = shipped_settings(args)
    shipped_sigmas = {v for setting in shipped_map for v in setting[3:]}
    cache: dict[tuple[str, str], Any] = {}
    halves = ("val", "test") + ((args.select_on,) if args.select_on else ())
    for name, d in dumps.items():
        for half in halves:
            cache[name, half] = prepared(d[half], score_sigmas | set(map_sigmas) | own_sigmas | shipped_sigmas)

    def image_row(half: str, *setting: Any) -> list[float]:
        return [image_auroc(cache[name, half], dumps[name][half], setting) for name in dumps]

    grid = image_grid(args, gaussians, score_sigmas)
    if args.select_on:
        select_per_dump(args, dumps, cache, grid, gaussians, map_sigmas)
        return
    rows = [(setting, image_row("val", *setting)) for setting in grid]
    rows.sort(key=lambda r: -sum(r[1]) / len(r[1]))
    names = list(dumps)
    print(f"image AUROC, validation halves (ranked by the mean), then the test halves; {len(rows)} settings")
    print(
        f"{'n':>5s} {'g':>4s} {'gw':>5s} {'mode':>7s} {'blur':>4s} | "
        + " ".join(f"{k:>12s}" for k in names)
        + "     mean | "
        + " ".join(f"{k:>12s}" for k in names)
        + "     mean"
    )
    shown = [r for r in rows if r[0] in shipped] + [r for r in rows[: args.show] if r[0] not in shipped]
    # the best row of every image score and blur, whatever its rank
    for key in (3, 4):
        for value in sorted({setting[key] for setting, _ in rows}):
            best = next(r for r in rows if r[0][key] == value)
            if best not in shown:
                shown.append(best)
    for setting, val in shown:
        test = image_row("test", *setting)
        n, gname, g, mode, s = setting
        print(table_line(f"{n:5.2f} {gname:>4s} {g:5.2f} {mode:>7s} {s:4.0f}", val, test, 12), flush=True)

    def map_row(half: str, *setting: Any) -> list[float]:
        return [
            v for name in dumps for v in map_quality(cache[name, half], dumps[name][half], setting, not args.no_aupro)
        ]

    grid_map = map_grid(args, gaussians, map_sigmas)
    map_rows = [(setting, map_row("val", *setting)) for setting in grid_map]
    map_rows.sort(key=lambda r: -sum(r[1]) / len(r[1]))
    cols = [f"{k}:{m}" for k in names for m in (["pixel"] if args.no_aupro else ["pixel", "aupro"])]
    print("\nmap (smoothed), validation halves ranked by the mean, then the test halves")
    print(
        f"{'n':>5s} {'g':>4s} {'gw':>5s} {'sigma':>5s} {'gs':>4s} | "
        + " ".join(f"{c[-18:]:>18s}" for c in cols)
        + "     mean | test"
    )
    first = [r for r in map_rows if r[0] in shipped_map]
    for setting, val in first + [r for r in map_rows[: args.show] if r not in first]:
        test = map_row("test", *setting)
        n, gname, g, sigma, gsigma = setting
        print(table_line(f"{n:5.2f} {gname:>4s} {g:5.2f} {sigma:5.1f} {gsigma:4.1f}", val, test, 18), flush=True)


def select_per_dump(
    args: Any,
    dumps: dict[str, Any],
    cache: dict[tuple[str, str], Any],
    grid: list[tuple[Any, ...]],
    gaussians: list[str],
    map_sigmas: list[float],
) -> None:
    """Per dump: rank every image score and map on the synthetic half ``args.select_on``, then
    show the real validation and test halves of its choice beside the shipped settings."""
    shipped, shipped_map = shipped_settings(args)
    grid_map = map_grid(args, gaussians, map_sigmas)
    for name in dumps:

        def image(half: str, setting: tuple[Any, ...], name: str = name) -> float:
            return image_auroc(cache[name, half], dumps[name][half], setting)

        def pixel(half: str, setting: tuple[Any, ...], name: str = name) -> list[float]:
            return map_quality(cache[name, half], dumps[name][half], setting)

        on_synth = {setting: image(args.select_on, setting) for setting in {*grid, *shipped}}
        ranked = sorted(grid, key=lambda setting: -on_synth[setting])
        print(f"\n{name}: image score chosen on {args.select_on} (its AUROC there), then the real halves")
        for tag, setting in (
            [("shipped", s) for s in shipped]
            + [("chosen", ranked[0])]
            + [(f"#{i + 2}", s) for i, s in enumerate(ranked[1 : args.show])]
        ):
            n, gname, g, mode, s = setting
            print(
                f"  {tag:>8s} n {n:4.2f} {gname} {g:4.2f} {mode} blur {s:g}: {args.select_on} "
                f"{on_synth[setting]:.4f} | val {image('val', setting):.4f} | "
                f"test {image('test', setting):.4f}",
                flush=True,
            )
        on_synth_map = {setting: pixel(args.select_on, setting) for setting in {*grid_map, *shipped_map}}
        ranked_map = sorted(grid_map, key=lambda setting: -sum(on_synth_map[setting]))
        print(f"{name}: map chosen on {args.select_on} (pixel AUROC / AUPRO there), then the real halves")
        for tag, setting in (
            [("shipped", s) for s in shipped_map]
            + [("chosen", ranked_map[0])]
            + [(f"#{i + 2}", s) for i, s in enumerate(ranked_map[1 : min(args.show, 4)])]
        ):
            n, gname, g, sigma, gsigma = setting
            values = [(args.select_on, on_synth_map[setting])] + [(h, pixel(h, setting)) for h in ("val", "test")]
            cells = " | ".join("{} {:.4f} / {:.4f}".format(half, *v) for half, v in values)
            print(f"  {tag:>8s} n {n:4.2f} {gname} {g:4.2f} sigma {sigma:g} / {gsigma:g}: {cells}", flush=True)


if __name__ == "__main__":
    main()

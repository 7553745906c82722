"""The ablation report: mean +- std over seeds of every metric, per combination of the other axes."""

from __future__ import annotations

import io
import math
import statistics
from pathlib import Path
from typing import Any

from anomalysynth.ablation.grid import SEED_AXIS
from anomalysynth.ablation.table import OK, ResultsTable
from anomalysynth.files import atomic_write_bytes

__all__ = ["summarize", "write_ablation_report"]

_NOT_METRICS = {"run_id", "status", "error", "seconds"}


def summarize(rows: list[dict[str, Any]], metrics: list[str] | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """(metric names, one summary per group): groups share every axis level except the seed.

    Each summary has the group's axis levels, ``runs`` (seeds averaged) and
    ``<metric>_mean`` / ``<metric>_std`` (population std over seeds; 0 for one seed).
    """
    ok = [r for r in rows if r.get("status") == OK]
    axes = [k for k in dict.fromkeys(k for r in ok for k in r) if k.startswith("axis.") and k != f"axis.{SEED_AXIS}"]
    if not metrics:
        metrics = [
            k
            for k in dict.fromkeys(k for r in ok for k in r)
            if k not in _NOT_METRICS and not k.startswith("axis.") and isinstance(ok[0].get(k), int | float)
        ]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in ok:
        groups.setdefault(tuple(row.get(a) for a in axes), []).append(row)
    summaries = []
    for key, members in groups.items():
        summary: dict[str, Any] = dict(zip(axes, key, strict=True))
        summary["runs"] = len(members)
        for metric in metrics:
            values = [float(m[metric]) for m in members if isinstance(m.get(metric), int | float)]
            summary[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
            summary[f"{metric}_std"] = statistics.pstdev(values) if len(values) > 1 else 0.0
        summaries.append(summary)
    return metrics, summaries


def write_ablation_report(folder: str | Path, metrics: list[str] | None = None, title: str | None = None) -> Path:
    """``report.md`` and ``report.png`` under ``folder`` (an ablation output with ``results.jsonl``)."""
    folder = Path(folder)
    table = ResultsTable(folder)
    rows = table.rows()
    if not rows:
        raise ValueError(f"No results in {str(table.path)!r}: run `anomalysynth ablate` first.")
    metrics, summaries = summarize(rows, metrics)
    failed = [r for r in rows if r.get("status") != OK]
    axes = [k for k in (summaries[0] if summaries else {}) if k.startswith("axis.")]
    lines = [
        f"# Ablation: {title or folder.name}",
        "",
        f"{len(rows) - len(failed)} finished runs, {len(failed)} failed; metrics are mean +- std over the "
        f"`{SEED_AXIS}` axis (population std; `runs` = seeds averaged).",
        "",
        "| " + " | ".join([a.removeprefix("axis.") for a in axes] + ["runs", *metrics]) + " |",
        "|" + "---|" * (len(axes) + 1 + len(metrics)),
    ]
    for s in summaries:
        cells = [str(s[a]) for a in axes] + [str(s["runs"])]
        cells += [_pm(s[f"{m}_mean"], s[f"{m}_std"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    if failed:
        lines += ["", "Failed runs (re-run by `anomalysynth ablate` again):", ""]
        lines += [f"- `{r['run_id']}`: {r.get('error', '')}" for r in failed]
    lines += ["", "![metrics](report.png)", ""]
    if summaries and metrics:
        atomic_write_bytes(folder / "report.png", _plot(summaries, axes, metrics))
    return atomic_write_bytes(folder / "report.md", "\n".join(lines).encode())


def _pm(mean: float, std: float) -> str:
    return "-" if math.isnan(mean) else f"{mean:.4f} +- {std:.4f}"


def _plot(summaries: list[dict[str, Any]], axes: list[str], metrics: list[str]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["\n".join(str(s[a]) for a in axes) or "base" for s in summaries]
    fig, plots = plt.subplots(1, len(metrics), figsize=(max(4.0, 0.7 * len(labels)) * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(plots[0], metrics, strict=True):
        means = [s[f"{metric}_mean"] for s in summaries]
        stds = [s[f"{metric}_std"] for s in summaries]
        ax.bar(range(len(labels)), [0 if math.isnan(m) else m for m in means], yerr=stds, capsize=3)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"{metric} (mean +- std over seeds)", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()

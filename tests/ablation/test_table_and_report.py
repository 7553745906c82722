"""The results table (append-only, torn lines skipped, latest row wins) and the report's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from anomalysynth.ablation import ResultsTable, summarize
from anomalysynth.cli import main


def test_latest_row_wins_and_torn_lines_are_skipped(tmp_path):
    table = ResultsTable(tmp_path)
    table.append({"run_id": "a", "status": "failed"})
    with open(table.path, "a") as handle:
        handle.write('{"run_id": "b", "st')
    table.append({"run_id": "a", "status": "ok", "x": 1.0})
    table.append({"run_id": "c", "status": "ok", "x": 2.0})
    assert [r["run_id"] for r in table.rows()] == ["a", "c"]
    assert table.finished() == {"a", "c"}
    assert table.path.read_text().count("\n") == 4  # the torn line stays on a line of its own


def rows_for(values):
    return [
        {"run_id": f"{s}-{seed}", "status": "ok", "axis.synthesizer": s, "axis.seed": str(seed), "auroc": v}
        for s, per_seed in values.items()
        for seed, v in enumerate(per_seed)
    ]


def test_summary_is_mean_and_std_over_seeds():
    values = {"cutpaste": [0.7, 0.8, 0.9], "perlin": [0.6, 0.65, 0.5]}
    rows = [*rows_for(values), {"run_id": "x", "status": "failed", "axis.synthesizer": "perlin", "axis.seed": "9"}]
    metrics, summaries = summarize(rows)
    assert metrics == ["auroc"]
    by_name = {s["axis.synthesizer"]: s for s in summaries}
    for name, v in values.items():
        assert by_name[name]["runs"] == 3
        assert by_name[name]["auroc_mean"] == pytest.approx(np.mean(v))
        assert by_name[name]["auroc_std"] == pytest.approx(np.std(v))


def test_report_verb_writes_markdown_and_plot(tmp_path):
    table = ResultsTable(tmp_path)
    for row in rows_for({"cutpaste": [0.7, 0.9], "perlin": [0.5, 0.6]}):
        table.append(row)
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "| cutpaste | 2 | 0.8000 +- 0.1000 |" in text
    assert (tmp_path / "report.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="No results"):
        main(["report", str(tmp_path / "empty")])

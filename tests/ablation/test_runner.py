"""The runner: every run fit and tested with its config beside its result; resumption after a kill or a crash."""

from __future__ import annotations

import json

import pytest
import yaml

from anomalysynth.ablation import LocalExecutor, ResultsTable, load_grid, run_grid
from anomalysynth.cli import main
from tests.ablation.conftest import write_grid

VOLATILE = {"seconds"}


def table_rows(folder):
    return sorted(
        ({k: v for k, v in r.items() if k not in VOLATILE} for r in ResultsTable(folder).rows()),
        key=lambda r: r["run_id"],
    )


class KilledAfter(LocalExecutor):
    """Stops the grid (as a kill would) after ``count`` runs have finished."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def map(self, specs, runs_dir):
        for i, row in enumerate(super().map(specs, runs_dir)):
            yield row
            if i + 1 == self.count:
                raise KeyboardInterrupt


def test_every_run_writes_its_config_and_result(small_grid):
    grid = load_grid(small_grid)
    table = run_grid(grid, progress=False)
    rows = table.rows()
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    for spec in grid.runs():
        folder = grid.output / "runs" / spec.run_id
        written = yaml.safe_load((folder / "config.yaml").read_text())
        assert written["data"]["init_args"]["strength"] == spec.config["data"]["init_args"]["strength"]
        assert json.loads((folder / "result.json").read_text())["run_id"] == spec.run_id
    header = (grid.output / "results.csv").read_text().splitlines()[0]
    assert "image_AUROC" in header and "axis.strength" in header
    by_strength = {r["axis.strength"]: r["weight_norm"] for r in rows if r["axis.seed"] == "0"}
    assert by_strength["0.5"] != by_strength["2.0"]  # the axis reached the data


def test_killed_and_restarted_grid_has_exactly_the_rows_of_an_uninterrupted_one(small_grid, tmp_path):
    reference = load_grid(small_grid, output=tmp_path / "uninterrupted")
    run_grid(reference, progress=False)

    grid = load_grid(small_grid, output=tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_grid(grid, KilledAfter(2), progress=False)
    assert len(ResultsTable(grid.output).rows()) == 2
    with open(grid.output / "results.jsonl", "a") as handle:
        handle.write('{"run_id": "torn by the kill", "sta')  # a half-written line
    run_grid(grid, progress=False)
    assert table_rows(grid.output) == table_rows(reference.output)
    lines = (grid.output / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5  # 2 + the torn line + 2: finished runs were not run again


def test_a_crashed_run_is_rerun_and_finished_ones_are_not(tmp_path):
    marker = tmp_path / "crashed"
    axes = {
        "detector": {
            "plain": {},
            "crashes_once": {"model.init_args.crash_marker": str(marker)},
        }
    }
    path = write_grid(tmp_path, axes)
    assert main(["ablate", "-c", str(path)]) == 1  # one run failed
    rows = {r["axis.detector"]: r for r in ResultsTable(tmp_path / "out").rows()}
    assert rows["crashes_once"]["status"] == "failed" and "planned crash" in rows["crashes_once"]["error"]
    assert marker.exists()
    assert main(["ablate", "-c", str(path)]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["axis.detector"] for r in lines] == ["plain", "crashes_once", "crashes_once"]
    assert lines[-1]["status"] == "ok"
    assert (tmp_path / "out" / "report.md").is_file()


def test_dry_run_lists_done_and_todo(small_grid, capsys):
    grid = load_grid(small_grid)
    run_grid(grid, only="strength=0.5", progress=False)
    assert main(["ablate", "-c", str(small_grid), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[0] for line in lines) == ["done", "done", "todo", "todo"]


@pytest.mark.slow
def test_two_worker_processes_give_the_sequential_table(small_grid, tmp_path):
    sequential = load_grid(small_grid, output=tmp_path / "sequential")
    run_grid(sequential, progress=False)
    parallel = load_grid(small_grid, output=tmp_path / "parallel")
    run_grid(parallel, LocalExecutor(workers=2), progress=False)
    assert table_rows(parallel.output) == table_rows(sequential.output)


@pytest.mark.slow
def test_ray_executor_gives_the_local_table(small_grid, tmp_path):
    pytest.importorskip("ray")
    from anomalysynth.ablation import RayExecutor

    local = load_grid(small_grid, output=tmp_path / "local")
    run_grid(local, progress=False)
    on_ray = load_grid(small_grid, output=tmp_path / "ray")
    run_grid(on_ray, RayExecutor(num_cpus=2), progress=False)
    assert table_rows(on_ray.output) == table_rows(local.output)


def test_missing_ray_is_a_clear_error(monkeypatch):
    import sys

    from anomalysynth.ablation import create_executor

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"anomalysynth\[ray\]"):
        create_executor("ray")

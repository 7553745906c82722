"""Ablation grids: expansion into runs, local and Ray executors, the results table and its report."""

from anomalysynth.ablation.executors import Executor, LocalExecutor, RayExecutor, create_executor
from anomalysynth.ablation.grid import AblationGrid, RunSpec, load_grid, set_dotted
from anomalysynth.ablation.random_selection import RandomFeatureSelection
from anomalysynth.ablation.report import summarize, write_ablation_report
from anomalysynth.ablation.run import execute_run
from anomalysynth.ablation.runner import run_grid
from anomalysynth.ablation.table import ResultsTable

__all__ = [
    "AblationGrid",
    "Executor",
    "LocalExecutor",
    "RandomFeatureSelection",
    "RayExecutor",
    "ResultsTable",
    "RunSpec",
    "create_executor",
    "execute_run",
    "load_grid",
    "run_grid",
    "set_dotted",
    "summarize",
    "write_ablation_report",
]

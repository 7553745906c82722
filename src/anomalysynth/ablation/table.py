"""The results table of an ablation: one JSON line per finished (or failed) run.

Rows are appended with one ``write`` on a file opened with ``O_APPEND`` under an
exclusive lock and flushed to disk, so concurrent writers never interleave and a
killed process leaves at most one torn last line, which :meth:`ResultsTable.rows`
skips. A run's latest row counts; ``results.csv`` is rewritten atomically from them.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from pathlib import Path
from typing import Any

from anomalysynth.files import atomic_write_bytes

__all__ = ["ResultsTable"]

OK, FAILED = "ok", "failed"


class ResultsTable:
    """``results.jsonl`` (append-only) and ``results.csv`` (derived) under ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "results.jsonl"

    def append(self, row: dict[str, Any]) -> None:
        """Append one row (one line, one write, flushed to disk)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(row, sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size and not _ends_with_newline(self.path):
                line = b"\n" + line  # a torn line from a killed writer stays alone on its line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def rows(self) -> list[dict[str, Any]]:
        """The latest complete row of every run, in the order they were first written."""
        latest: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line
            if isinstance(row, dict) and "run_id" in row:
                latest[row["run_id"]] = row
        return list(latest.values())

    def finished(self) -> set[str]:
        """Ids of runs whose latest row succeeded."""
        return {row["run_id"] for row in self.rows() if row.get("status") == OK}

    def write_csv(self, order: list[str] | None = None) -> Path:
        """``results.csv`` of the latest rows (in ``order`` of run ids when given), written atomically."""
        rows = self.rows()
        if order is not None:
            rank = {run_id: i for i, run_id in enumerate(order)}
            rows.sort(key=lambda r: rank.get(r["run_id"], len(rank)))
        columns: list[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_bytes(self.folder / "results.csv", buffer.getvalue().encode())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"

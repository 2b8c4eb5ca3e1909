"""One cell of a suite, run in a process of its own, and the record of its outcome.

Records live in ``OUT/cells/<key>.json`` (the key hashes the cell's whole configuration), beside the
cell's log; results go to ``OUT`` itself, where `pxp-bench leaderboard OUT` reads them. A record with
status ``done`` means the cell never runs again; ``failed`` runs again only with ``--retry-failed``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pxp_bench.results import atomic_write_text
from pxp_bench.suites.definition import Cell

DONE, FAILED = "done", "failed"
CELLS_FOLDER = "cells"


@dataclass(frozen=True)
class CellTask:
    """What an executor hands to `execute_cell`: the cell and where its outcome goes (picklable)."""

    cell: Cell
    out: str
    threads: int | None = None
    """Torch threads for the cell (None: torch's default); a pool of N cells on C cores gives each C/N."""

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def record_path(self) -> Path:
        return Path(self.out) / CELLS_FOLDER / f"{self.key}.json"

    @property
    def log_path(self) -> Path:
        return Path(self.out) / CELLS_FOLDER / f"{self.key}.log"


def read_record(task: CellTask) -> dict[str, Any] | None:
    """The cell's recorded outcome, or None (never run, interrupted, or an unreadable record)."""
    try:
        record = json.loads(task.record_path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") in (DONE, FAILED) else None


def write_record(task: CellTask, status: str, *, result: str | None = None, error: str | None = None,
                 seconds: float | None = None) -> None:
    record = {"key": task.key, "label": task.cell.label, "status": status, "result": result, "error": error,
              "seconds": None if seconds is None else round(seconds, 2),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "config": dict(task.cell.config)}
    atomic_write_text(task.record_path, json.dumps(record, indent=2, default=str) + "\n")


def last_log_line(task: CellTask) -> str:
    """The last non-empty line of the cell's log: usually what it died of."""
    try:
        lines = [line.strip() for line in task.log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (Python's and the C libraries') to the cell's log."""
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(log, 1), os.dup2(log, 2)
    os.close(log)


def execute_cell(task: CellTask) -> None:
    """Run the cell in this process and record its outcome; an error of the run is recorded, not raised
    (the process ends normally, so an executor tells a failed run from a crashed process)."""
    import torch

    from pxp_bench.benchmark import run_benchmark
    from pxp_bench.errors import PxpBenchError
    from pxp_bench.results import write_result

    task.record_path.parent.mkdir(parents=True, exist_ok=True)
    _redirect_output(task.log_path)
    if task.threads:
        torch.set_num_threads(task.threads)
    print(f"cell {task.key}: {task.cell.label}", flush=True)
    started = time.perf_counter()
    try:
        result = run_benchmark(task.cell.benchmark())
        if task.cell.optimisation is not None:
            result.optimisation = dict(task.cell.optimisation)
        path = write_result(result, Path(task.out))
    except PxpBenchError as exc:
        print(f"Error: {exc}", flush=True)
        write_record(task, FAILED, error=str(exc), seconds=time.perf_counter() - started)
        return
    except Exception as exc:  # noqa: BLE001 - a suite records any cell's failure and goes on
        traceback.print_exc()
        write_record(task, FAILED, error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                     seconds=time.perf_counter() - started)
        return
    write_record(task, DONE, result=path.name, seconds=time.perf_counter() - started)
    print(f"done: {path.name}", flush=True)

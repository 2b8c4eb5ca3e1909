"""One cell of a suite, run in a process of its own, and the record of its outcome.

Records live in ``OUT/cells/<key>.json`` (the key hashes the cell's whole configuration), beside the
cell's log; results go to ``OUT`` itself, where `pxp-bench leaderboard OUT` reads them. A record with
status ``done`` means the cell never runs again; ``failed`` runs again only with ``--retry-failed``.

Two suite runs may share ``OUT``: a cell runs only while its process holds the cell's lock
(``OUT/cells/<key>.lock``, an ``flock``), so the other run skips it. The kernel releases the lock when
the process ends however it ends, so a killed run leaves no lock to clean up.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

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
    runner: str = ""
    """The suite run that handed the cell out, written into its record: whose outcome a record is."""

    @property
    def key(self) -> str:
        return self.cell.key

    @property
    def record_path(self) -> Path:
        return Path(self.out) / CELLS_FOLDER / f"{self.key}.json"

    @property
    def log_path(self) -> Path:
        return Path(self.out) / CELLS_FOLDER / f"{self.key}.log"

    @property
    def lock_path(self) -> Path:
        return Path(self.out) / CELLS_FOLDER / f"{self.key}.lock"


@contextmanager
def cell_lock(task: CellTask) -> Iterator[bool]:
    """Hold the cell's lock while the block runs, yielding True; False when another process holds it."""
    task.lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(task.lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # released when the file closes (or the process dies)


def cell_busy(task: CellTask) -> bool:
    """Whether another process runs the cell now (holds its lock)."""
    with cell_lock(task) as held:
        return not held


def read_record(task: CellTask) -> dict[str, Any] | None:
    """The cell's recorded outcome, or None (never run, interrupted, or an unreadable record)."""
    try:
        record = json.loads(task.record_path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("status") in (DONE, FAILED) else None


def write_record(task: CellTask, status: str, *, result: str | None = None, error: str | None = None,
                 seconds: float | None = None) -> None:
    record = {"key": task.key, "label": task.cell.label, "runner": task.runner, "status": status, "result": result,
              "error": error,
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
    (the process ends normally, so an executor tells a failed run from a crashed process). A cell another
    suite run is running, or finished since this run listed it, is left alone (no record, log untouched)."""
    with cell_lock(task) as held:
        record = read_record(task) if held else None
        if held and not (record and record["status"] == DONE):
            _execute(task)


def _execute(task: CellTask) -> None:
    import torch

    from pxp_bench.agreement import ABLATION_CACHE
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
        bench = task.cell.benchmark()
        bench.ablation_cache = Path(task.out) / ABLATION_CACHE  # the cells of a setting share its ablation
        result = run_benchmark(bench)
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

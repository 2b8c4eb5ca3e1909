"""Running a suite: the cells not yet finished, through an executor, each outcome recorded as it ends.

Resumable by construction: a cell whose record says ``done`` is never run again (its key hashes its
whole configuration, so a changed option makes a new cell); ``failed`` cells run again only with
``retry_failed``; a cell that was interrupted has no record and runs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from pxp_bench.errors import ConfigError
from pxp_bench.plugins import Plugins
from pxp_bench.results import ensure_writable_dir
from pxp_bench.suites.cells import DONE, FAILED, CellTask, last_log_line, read_record, write_record
from pxp_bench.suites.definition import Suite
from pxp_bench.suites.local import cores


@dataclass
class SuiteReport:
    """What a `run_suite` call did; ``failed`` holds (cell label, error, log file) of this call's failures
    and of earlier failures it did not retry."""

    finished_before: int = 0
    done: int = 0
    failed: list[tuple[str, str, Path]] = field(default_factory=list)


def suite_tasks(suite: Suite, out: Path, jobs: int) -> list[CellTask]:
    threads = max(1, cores() // jobs)
    return [CellTask(cell, str(out), threads) for cell in suite.cells]


def run_suite(suite: Suite, out: Path, plugins: Plugins, *, executor: str = "local", jobs: int = 1,
              options: Mapping[str, str] | None = None, retry_failed: bool = False,
              on_progress: Callable[[CellTask, str], None] | None = None,
              on_start: Callable[[int], None] | None = None) -> SuiteReport:
    """Run every cell of ``suite`` that has not finished into ``out``; ``on_start(pending)`` and
    ``on_progress(task, status)`` let a caller draw progress."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    spec = plugins.executors.get(executor)
    unknown = sorted(set(options or {}) - set(spec.options))
    if unknown:
        known = ", ".join(f"--{name.replace('_', '-')}" for name in spec.options) or "none"
        raise ConfigError(f"executor '{executor}' takes no {', '.join(unknown)}; its options: {known}.")
    ensure_writable_dir(out)
    report = SuiteReport()
    pending = []
    for task in suite_tasks(suite, out, jobs):
        record = read_record(task)
        if record and record["status"] == DONE:
            report.finished_before += 1
        elif record and record["status"] == FAILED and not retry_failed:
            report.failed.append((task.cell.label, record.get("error") or "", task.log_path))
        else:
            pending.append(task)
    if on_start:
        on_start(len(pending))

    def on_done(task: CellTask, crash: str | None) -> None:
        record = read_record(task)
        if record is None or (crash and record["status"] != DONE):
            reason = crash or "the cell ended without recording an outcome"
            last = last_log_line(task)
            write_record(task, FAILED, error=f"{reason}{f'; its log ends: {last}' if last else ''}")
            record = read_record(task)
        if record["status"] == DONE:
            report.done += 1
        else:
            report.failed.append((task.cell.label, record.get("error") or "", task.log_path))
        if on_progress:
            on_progress(task, record["status"])

    if pending:
        spec.load_run()(pending, jobs=jobs, options=dict(options or {}), on_done=on_done)
    return report

"""Running a suite: the cells not yet finished, through an executor, each outcome recorded as it ends.

Resumable by construction: a cell whose record says ``done`` is never run again (its key hashes its
whole configuration, so a changed option makes a new cell); ``failed`` cells run again only with
``retry_failed``; a cell that was interrupted has no record and runs again. Two runs into one folder
share the work: each cell runs in one of them (`pxp_bench.suites.cells.cell_lock`), the other reports it
as skipped.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from pxp_bench.errors import ConfigError
from pxp_bench.plugins import Plugins
from pxp_bench.results import ensure_writable_dir
from pxp_bench.suites.cells import DONE, FAILED, CellTask, cell_busy, last_log_line, read_record, write_record
from pxp_bench.suites.definition import Suite
from pxp_bench.suites.local import cores


@dataclass
class SuiteReport:
    """What a `run_suite` call did; ``failed`` holds (cell label, error, log file) of this call's failures
    and of earlier failures it did not retry."""

    finished_before: int = 0
    done: int = 0
    failed: list[tuple[str, str, Path]] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    """Labels of the cells another suite run into the same folder ran (or is running) instead."""


ELSEWHERE = "elsewhere"
"""The status `run_suite` reports for a cell another suite run took."""


def suite_tasks(suite: Suite, out: Path, jobs: int, runner: str = "") -> list[CellTask]:
    threads = max(1, cores() // jobs)
    return [CellTask(cell, str(out), threads, runner) for cell in suite.cells]


@contextmanager
def removed_if_left_empty(folder: Path) -> Iterator[None]:
    """Remove the folders the block created on the way to ``folder`` when it fails and leaves them empty:
    a refused run leaves no trace."""
    created = [path for path in (folder, *folder.parents) if not path.exists()]
    try:
        yield
    except BaseException:
        for path in created:  # deepest first; a folder holding anything stays
            try:
                path.rmdir()
            except OSError:
                break
        raise


def run_suite(suite: Suite, out: Path, plugins: Plugins, *, executor: str = "local", jobs: int = 1,
              options: Mapping[str, str] | None = None, retry_failed: bool = False,
              on_progress: Callable[[CellTask, str], None] | None = None,
              on_start: Callable[[int], None] | None = None,
              on_status: Callable[[str], None] | None = None) -> SuiteReport:
    """Run every cell of ``suite`` that has not finished into ``out``; ``on_start(pending)`` and
    ``on_progress(task, status)`` let a caller draw progress, ``on_status(text)`` hears an executor that
    reports where its work stands (a cluster's job states)."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    spec = plugins.executors.get(executor)
    unknown = sorted(set(options or {}) - set(spec.options))
    if unknown:
        known = ", ".join(f"--{name.replace('_', '-')}" for name in spec.options) or "none"
        raise ConfigError(f"executor '{executor}' takes no {', '.join(unknown)}; its options: {known}.")
    with removed_if_left_empty(Path(out)):
        return _run_pending(suite, Path(out), spec, jobs, dict(options or {}), retry_failed, on_progress, on_start,
                            on_status)


def _run_pending(suite: Suite, out: Path, spec, jobs: int, options: dict[str, str], retry_failed: bool,
                 on_progress: Callable[[CellTask, str], None] | None,
                 on_start: Callable[[int], None] | None,
                 on_status: Callable[[str], None] | None) -> SuiteReport:
    ensure_writable_dir(out)
    report = SuiteReport()
    pending = []
    runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    for task in suite_tasks(suite, out, jobs, runner):
        record = read_record(task)
        if record and record["status"] == DONE:
            report.finished_before += 1
        elif record and record["status"] == FAILED and not retry_failed:
            report.failed.append((task.cell.label, record.get("error") or "", task.log_path))
        else:
            pending.append(task)
    from pxp_bench.agreement import ABLATION, ABLATION_CACHE, check_ablation_cache

    if any(task.cell.config.get("agreement") or task.cell.config.get("method") == ABLATION for task in pending):
        check_ablation_cache(out / ABLATION_CACHE)  # the cells share it (`cells._execute`): refused before any runs
    check = spec.load_check()
    if check is not None and pending:
        check(options, len(pending))
    if on_start:
        on_start(len(pending))

    def on_done(task: CellTask, crash: str | None) -> None:
        busy = crash is None and cell_busy(task)  # before reading the record: it may finish meanwhile
        record = read_record(task)
        if crash is None and (busy if record is None else record.get("runner") != runner):
            report.elsewhere.append(task.cell.label)  # another suite run took the cell
            if on_progress:
                on_progress(task, ELSEWHERE)
            return
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
        status = {"on_status": on_status} if spec.reports_status and on_status else {}
        spec.load_run()(pending, jobs=jobs, options=options, on_done=on_done, **status)
    return report

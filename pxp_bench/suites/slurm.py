"""The ``slurm`` executor: the pending cells as one submitit job array on a SLURM cluster.

Each array task runs `execute_cell` on a node and writes its result and record into the output folder,
which must be shared between the nodes and the submitting machine; a later ``suite run`` with the same
folder skips what finished, whoever ran it. The scheduler checks the options before anything is
submitted (`pxp_bench.cluster.check_with_scheduler`); while the jobs run, their states are reported as
they change. ``cluster = local`` runs the same submission path with submitit's local executor (a
subprocess per cell on this machine): a dry run before queueing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping

from pxp_bench.cluster import (check_with_scheduler, cluster_of, ended, job_cores, make_executor, number,
                               state_reporter, stop_on_sigterm, submit_array)
from pxp_bench.suites.cells import CellTask, execute_cell


def run_slurm(tasks: list[CellTask], *, jobs: int, options: Mapping[str, str],
              on_done: Callable[[CellTask, str | None], None],
              on_status: Callable[[str], None] | None = None) -> None:
    if not tasks:
        return
    executor, cluster = make_executor(Path(tasks[0].out) / "slurm", options, "pxp-bench-cell", jobs)
    # SLURM limits the array's parallelism itself; the local executor would start every task at once
    batch = len(tasks) if cluster == "slurm" else max(1, number(options, "array_size", jobs))
    for start in range(0, len(tasks), batch):
        chunk = tasks[start:start + batch]
        submitted = submit_array(executor, cell_job, chunk, Path(tasks[0].out) / "slurm")
        by_job = {job.job_id: task for job, task in zip(submitted, chunk)}
        report = state_reporter(submitted, "jobs", on_status) if on_status else lambda: None
        for job, why in ended(submitted, cluster, report):
            on_done(by_job[job.job_id], None if why is None else f"the cell's {why}")
        report()


def check_slurm(options: Mapping[str, str], count: int) -> None:
    """Refuse options the scheduler would refuse for ``count`` cells, before any is submitted."""
    number(options, "array_size", 1, least=1)
    if cluster_of(options) == "slurm":
        check_with_scheduler(options, count)


def cell_job(task: CellTask) -> None:
    """What each job of the array runs: the cell, on as many torch threads as the job has cores (not the
    submitting machine's share), stopped at once when the job is cancelled (then it has no record, and the
    submitting command records it failed with its log's last line)."""
    stop_on_sigterm()
    cores = job_cores()
    execute_cell(dataclasses.replace(task, threads=cores) if cores else task)

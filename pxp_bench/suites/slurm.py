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
import os
import time
from pathlib import Path
from typing import Callable, Mapping

from pxp_bench.cluster import (POLL_S, check_with_scheduler, cluster_of, failure, job_states, make_executor, number,
                               stop_on_sigterm)
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
        submitted = executor.map_array(cell_job, chunk)
        by_job = {job.job_id: task for job, task in zip(submitted, chunk)}
        said = ""

        def report_states(*_) -> None:
            nonlocal said
            states = job_states(submitted)
            if on_status and states != said:
                on_status(f"jobs {submitted[0].job_id.split('_')[0]}: {states}")
                said = states

        for job in _as_completed(submitted, POLL_S[cluster], report_states):
            try:
                job.result()
                crash = None
            except Exception as exc:  # noqa: BLE001 - submitit re-raises whatever ended the job
                crash = f"the cell's {failure(job, exc)}"
            on_done(by_job[job.job_id], crash)
            report_states()


def check_slurm(options: Mapping[str, str], count: int) -> None:
    """Refuse options the scheduler would refuse for ``count`` cells, before any is submitted."""
    if cluster_of(options) == "slurm":
        check_with_scheduler(options, count)


def cell_job(task: CellTask) -> None:
    """What each job of the array runs: the cell, on as many torch threads as the job has cores (not the
    submitting machine's share), stopped at once when the job is cancelled (then it has no record, and the
    submitting command records it failed with its log's last line)."""
    stop_on_sigterm()
    cores = os.environ.get("SLURM_CPUS_PER_TASK")
    execute_cell(dataclasses.replace(task, threads=int(cores)) if cores else task)


def _as_completed(jobs, poll_s: float, on_poll: Callable[[], None]):
    """submitit's ``as_completed``, reporting the jobs' states at each look (submitit's has no hook)."""
    waiting = list(jobs)
    while waiting:
        on_poll()
        ended = [job for job in waiting if job.done()]
        for job in ended:
            waiting.remove(job)
            yield job
        if waiting and not ended:
            time.sleep(poll_s)

"""The ``slurm`` executor: the pending cells as one submitit job array on a SLURM cluster.

Each array task runs `execute_cell` on a node and writes its result and record into the output folder,
which must be shared between the nodes and the submitting machine; a later ``suite run`` with the same
folder skips what finished, whoever ran it. ``cluster = local`` runs the same submission path with
submitit's local executor (a subprocess per cell on this machine): a dry run before queueing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Mapping

from pxp_bench.errors import ConfigError
from pxp_bench.suites.cells import CellTask, execute_cell


def _number(options: Mapping[str, str], key: str, default: int) -> int:
    value = options.get(key)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"--{key.replace('_', '-')} must be a whole number, got '{value}'.") from None
    if number < 0:
        raise ConfigError(f"--{key.replace('_', '-')} must be 0 or more, got {number}.")
    return number


def _executor(folder: Path, options: Mapping[str, str], jobs: int):
    import submitit

    cluster = options.get("cluster") or "slurm"
    if cluster not in ("slurm", "local"):
        raise ConfigError(f"--cluster must be slurm or local, got '{cluster}'.")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("no SLURM here (sbatch is not on PATH): run on the cluster's login node, use "
                          "--executor local, or --cluster local to try the submission path on this machine.")
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(
        name="pxp-bench-cell", timeout_min=_number(options, "time_limit", 120),
        gpus_per_node=_number(options, "gpus", 1 if cluster == "slurm" else 0),
        cpus_per_task=_number(options, "cpus", 8), mem_gb=_number(options, "mem_gb", 32),
        slurm_partition=options.get("partition"), slurm_array_parallelism=_number(options, "array_size", jobs),
    )
    return executor, cluster


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:300]


def run_slurm(tasks: list[CellTask], *, jobs: int, options: Mapping[str, str],
              on_done: Callable[[CellTask, str | None], None]) -> None:
    import submitit

    if not tasks:
        return
    executor, cluster = _executor(Path(tasks[0].out) / "slurm", options, jobs)
    # SLURM limits the array's parallelism itself; the local executor would start every task at once
    batch = len(tasks) if cluster == "slurm" else max(1, _number(options, "array_size", jobs))
    for start in range(0, len(tasks), batch):
        chunk = tasks[start:start + batch]
        submitted = executor.map_array(execute_cell, chunk)
        by_job = {job.job_id: task for job, task in zip(submitted, chunk)}
        for job in submitit.helpers.as_completed(submitted, poll_frequency=1 if cluster == "local" else 30):
            try:
                job.result()
                crash = None
            except Exception as exc:  # noqa: BLE001 - submitit re-raises whatever ended the job
                crash = f"the cell's job {job.job_id} failed: {_first_line(exc)}"
            on_done(by_job[job.job_id], crash)

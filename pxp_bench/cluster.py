"""SLURM through submitit, shared by the suites' ``slurm`` executor and ``optimize --executor slurm``: the
executor made from the user's options, the scheduler's verdict on them before anything is submitted, and
the states of the submitted jobs.

submitit follows jobs through ``sacct``: on a cluster without accounting it cannot tell that a cancelled
job ended (it warns that it bypasses sacct and waits). The CI cluster (`.ci/slurm.sh`) has accounting.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from pxp_bench.errors import ConfigError

OPTIONS = {
    "partition": "SLURM partition (default: the cluster's)",
    "gpus": "GPUs per job (default 1 on SLURM, 0 with --cluster local)",
    "time_limit": "minutes per job before SLURM stops it (default 120)",
    "array_size": "jobs of the array running at once (default: all, or --jobs for a suite)",
    "cpus": "CPU cores per job (default 8)",
    "mem_gb": "memory per job in GB (default 32)",
    "cluster": "slurm (default) or local: submitit's local executor, the same submission path on this machine",
}
"""The executor's options (name -> help), as ``--partition``, ``--time-limit``... on the command line."""

POLL_S = {"slurm": 2.0, "local": 1.0}
"""How often the submitting command looks at its jobs: a finished job shows as its result file; the
scheduler itself is asked (``sacct``) at submitit's own pace, every minute at most once the jobs are old."""


def number(options: Mapping[str, str], key: str, default: int, least: int = 0) -> int:
    """The whole number option ``key`` (``least`` or more), or ``default`` where it is not given."""
    value = options.get(key)
    if value is None:
        return default
    try:
        count = int(value)
    except ValueError:
        raise ConfigError(f"--{key.replace('_', '-')} must be a whole number, got '{value}'.") from None
    if count < least:
        raise ConfigError(f"--{key.replace('_', '-')} must be {least} or more, got {count}.")
    return count


def cluster_of(options: Mapping[str, str]) -> str:
    cluster = options.get("cluster") or "slurm"
    if cluster not in ("slurm", "local"):
        raise ConfigError(f"--cluster must be slurm or local, got '{cluster}'.")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("no SLURM here (sbatch is not on PATH): run on the cluster's login node, use "
                          "--executor local, or --cluster local to try the submission path on this machine.")
    return cluster


def resources(options: Mapping[str, str], cluster: str) -> dict[str, Any]:
    return {"time_limit": number(options, "time_limit", 120), "gpus": number(options, "gpus", int(cluster == "slurm")),
            "cpus": number(options, "cpus", 8), "mem_gb": number(options, "mem_gb", 32),
            "partition": options.get("partition")}


def check_with_scheduler(options: Mapping[str, str], count: int) -> None:
    """Ask SLURM whether it would run ``count`` jobs with these options (``sbatch --test-only``), so that a
    bad partition, or more cores, memory or GPUs than its nodes have, is one line before anything is
    written. The flags are the ones submitit writes for the same parameters: submitit has no dry run."""
    wanted = resources(options, "slurm")
    flags = [f"--time={wanted['time_limit']}", f"--cpus-per-task={wanted['cpus']}", f"--mem={wanted['mem_gb']}GB",
             f"--array=0-{max(count, 1) - 1}"]
    if wanted["partition"]:
        flags.append(f"--partition={wanted['partition']}")
    if wanted["gpus"]:
        flags.append(f"--gpus-per-node={wanted['gpus']}")
    answer = subprocess.run(["sbatch", "--test-only", *flags, "--wrap", "true"], capture_output=True, text=True)
    if answer.returncode != 0:
        lines = [line.strip() for line in (answer.stderr + answer.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"sbatch exited with {answer.returncode}"
        asked = " ".join(flag for flag in flags if not flag.startswith("--array"))
        raise ConfigError(f"SLURM refuses the jobs ({reason}; asked: {asked}). Fix --partition, --cpus, --mem-gb, --gpus or --time-limit (`sinfo` lists the "
                          "partitions and their nodes).")


def make_executor(folder: Path, options: Mapping[str, str], name: str, parallel: int):
    """A submitit executor for jobs named ``name`` writing their logs under ``folder``, at most ``parallel``
    of an array running at once; checked with the scheduler first (`check_with_scheduler`)."""
    import submitit

    cluster = cluster_of(options)
    wanted = resources(options, cluster)
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    executor.update_parameters(name=name, timeout_min=wanted["time_limit"], gpus_per_node=wanted["gpus"],
                               cpus_per_task=wanted["cpus"], mem_gb=wanted["mem_gb"],
                               slurm_partition=wanted["partition"],
                               slurm_array_parallelism=number(options, "array_size", parallel, least=1))
    return executor, cluster


def submit_array(executor, function: Callable, items: Sequence, folder: Path) -> list:
    """``executor.map_array``, where a refused submission (what ``sbatch --test-only`` does not check: QOS,
    association limits, a controller gone) is one line, and what submitit wrote for it into a fresh
    ``folder`` is removed."""
    fresh = not folder.exists()
    try:
        return executor.map_array(function, items)
    except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, or sbatch's CalledProcessError
        if fresh:
            shutil.rmtree(folder, ignore_errors=True)
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ConfigError(f"SLURM refused the submission ({lines[-1] if lines else type(exc).__name__}); no job was "
                          "submitted.") from None


def cancel(jobs: Sequence, cluster: str) -> None:
    """Cancel the jobs: one ``scancel`` of their array on SLURM (quick, whatever their number)."""
    if cluster == "slurm":
        subprocess.run(["scancel", array_id(jobs)], capture_output=True)
    else:
        for job in jobs:
            job.cancel(check=False)


def stop_on_sigterm() -> None:
    """Called first in a job: SLURM's SIGTERM (``scancel``, a node going down) stops the work at once, as
    Ctrl-C does. submitit ignores SIGTERM in its jobs and waits for the SIGKILL that follows KillWait
    seconds later (30 by default), so a cancelled cell or worker would run on meanwhile."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def job_cores() -> int | None:
    """In a SLURM job: the cores it was given (torch's threads should follow them, not the node's); else None."""
    cores = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(cores) if cores else None


def array_id(jobs: Sequence) -> str:
    """The SLURM id of the array that ``jobs`` (``4711_0``, ``4711_1``...) belong to."""
    return jobs[0].job_id.split("_")[0]


def job_states(jobs: Sequence) -> str:
    """The jobs' states in a few words, e.g. ``2 RUNNING, 1 PENDING, 3 COMPLETED``."""
    counts = Counter(_state(job) for job in jobs)
    return ", ".join(f"{count} {state}" for state, count in counts.most_common())


def state_reporter(jobs: Sequence, label: str, on_status: Callable[[str], None]) -> Callable[[], None]:
    """A function that tells ``on_status`` the jobs' states (``"LABEL 4711: 2 RUNNING, 1 PENDING"``) when they
    changed since it last did: one line per change, readable in a log file too."""
    said = ""

    def report() -> None:
        nonlocal said
        states = job_states(jobs)
        if states != said:
            on_status(f"{label} {array_id(jobs)}: {states}")
            said = states

    return report


def ended(jobs: Sequence, cluster: str, on_look: Callable[[], None]) -> Iterator[tuple[Any, str | None]]:
    """Each of ``jobs`` as it ends, with None when it finished, else one line saying why not; ``on_look()``
    at every look. submitit's own ``as_completed`` has no hook for the looks, asks the scheduler ever more
    rarely (every 10 minutes once the jobs are old: here every `SACCT_S`), and waits 15 s for the result of
    a job that will never have one."""
    waiting, asked = list(jobs), time.monotonic()
    while waiting:
        on_look()
        if cluster == "slurm" and time.monotonic() - asked >= SACCT_S:
            type(jobs[0]).watcher.update()  # one sacct call for every job of the class
            asked = time.monotonic()
        finished = [job for job in waiting if job.done()]
        for job in finished:
            waiting.remove(job)
            yield job, _failure(job)
        if waiting and not finished:
            time.sleep(POLL_S[cluster])


def _state(job) -> str:
    if job.paths.result_pickle.exists():  # finished: its result is there before the scheduler says so
        return "COMPLETED"
    state = job.state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return "SUBMITTED" if state == "UNKNOWN" else state  # not yet in the scheduler's accounting


def _failure(job) -> str | None:
    """None for a job that finished, else ``job 4711_3 ended CANCELLED (its error's or log's last line)``."""
    if not job.paths.result_pickle.exists():
        state = _scheduler_state(job)
        if state in ENDED:  # no result will come: its stderr says why
            return _line(job, state, _last_line(job.paths.stderr))
    try:
        job.result()
        return None
    except Exception as exc:  # noqa: BLE001 - submitit re-raises whatever ended the job
        # a raised error's message is its trace, then where the logs are: the trace's last line says it
        text = str(exc).split("You can check full logs")[0]
        lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("-")]
        return _line(job, _scheduler_state(job), f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__)


def _scheduler_state(job) -> str:
    return (job.get_info(mode="force").get("State") or "").split(" ")[0]


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()[-20:] if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _line(job, state: str, reason: str) -> str:
    how = f"ended {state}" if state in ENDED else "failed"  # the scheduler may not know yet
    return f"job {job.job_id} {how}{f' ({reason})'[:300] if reason else ''}"


SACCT_S = 30
"""How often a command following jobs asks the scheduler for their states (one ``sacct`` call for all)."""
ENDED = ("CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")
"""The scheduler's states of a job that ended without finishing."""

"""Local worker processes of a study (``pxp-bench optimize --jobs N``): how many this machine can hold,
and that none of them outlives the command that started it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Iterator

from pxp_bench.optimize.config import StudyConfig, config_to_json

STOP_WAIT_S = 2
"""How long interrupted workers get to fail their running trial before they are killed (a killed worker's
trial is failed as stale and retried on resume); within `pxp_bench.cli.interrupts.HARD_DEADLINE_S`."""


def cpu_cores() -> int:
    """The cores this process may run on (its affinity, as a container or ``taskset`` limits it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def memory() -> tuple[int, int] | None:
    """This process's resident bytes and the bytes available: psutil where installed, else Linux's /proc;
    None where neither tells."""
    try:
        import psutil

        return psutil.Process().memory_info().rss, psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        return _proc_kib("/proc/self/status", "VmRSS") * 1024, _proc_kib("/proc/meminfo", "MemAvailable") * 1024
    except (OSError, ValueError):
        return None


def _proc_kib(path: str, key: str) -> int:
    with open(path) as lines:
        return next(int(line.split()[1]) for line in lines if line.startswith(f"{key}:"))


def usable_jobs(jobs: int) -> int:
    """``jobs`` capped by the cores and by the memory a worker needs, with a warning saying what it used.

    Called once the command has prepared its own run: a worker prepares the same, so this process's
    resident size is what each further worker will take (``--jobs 100`` on 2 cores once woke the OOM
    killer, which left no output and orphans).
    """
    cores = cpu_cores()
    limit, reasons = cores, [f"{cores} CPU core{'s' if cores != 1 else ''}"]
    measured = memory()
    if measured is not None:
        resident, available = measured
        limit = min(limit, 1 + available // max(resident, 1))  # this process is resident already
        reasons.append(f"~{resident / 1e9:.1f} GB per worker of {available / 1e9:.0f} GB available")
    if jobs <= limit:
        return jobs
    warnings.warn(f"--jobs {jobs} capped to {limit}: {', '.join(reasons)}.")
    return limit


@contextlib.contextmanager
def local_workers(config: StudyConfig, count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` search-only workers on the study of ``config`` (they share its storage) while the block runs.

    Leaving the block normally waits for them (the study's trial count stops them) and warns of any
    that failed; leaving it by an exception (Ctrl-C, an error) interrupts them, so that each fails its
    running trial and exits, and kills those still there after `STOP_WAIT_S`.
    """
    workers = [subprocess.Popen([sys.executable, "-m", "pxp_bench.optimize.worker",
                                 config_to_json(dataclasses.replace(config, worker=index)), str(os.getpid())],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for index in range(1, count + 1)]
    try:
        yield workers
        for worker in workers:
            _, stderr = worker.communicate()
            if worker.returncode != 0:
                lines = stderr.strip().splitlines() or [f"exit status {worker.returncode}"]
                warnings.warn(f"an optimisation worker failed: {lines[-1]}")
    except BaseException:
        _stop(workers)
        raise


def _stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT_S
    for worker in workers:
        try:
            worker.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.communicate()


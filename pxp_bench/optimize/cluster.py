"""Optimisation workers as cluster jobs (``pxp-bench optimize --executor slurm --workers N``): N search-only
workers submitted as one SLURM job array sharing the study's database, followed by the command until
they end.

The study must live in a database server the nodes reach (PostgreSQL or MySQL): a journal file or a
SQLite database relies on file locks (``flock``, SQLite's POSIX locks) that network file systems do not
reliably keep across machines, so they are refused on a cluster; with ``--cluster local`` (the jobs on
this machine) they are fine. A worker whose job is cancelled, preempted or killed leaves its running
trial silent: the heartbeat fails it after the grace period and a surviving worker (or the next run)
retries it; finished trials are in the database and never lost.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Sequence

from pxp_bench.cluster import (cancel, check_with_scheduler, cluster_of, ended, job_cores, make_executor,
                               state_reporter, stop_on_sigterm, submit_array)
from pxp_bench.errors import ConfigError
from pxp_bench.optimize.config import StudyConfig, config_from_json, config_to_json

def check_cluster_workers(config: StudyConfig, options: Mapping[str, str], workers: int) -> str:
    """Refuse what cannot run as cluster workers, before anything is written; the cluster (slurm or local)."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    cluster = cluster_of(options)
    scheme = (config.storage or "").split(":", 1)[0].split("+", 1)[0]
    if cluster == "slurm" and (config.storage is None or scheme == "sqlite"):  # other schemes: `check_config`
        where = "a journal file" if config.storage is None else "a SQLite database"
        raise ConfigError(f"workers on a cluster share the study through a database server: --storage is {where}, "
                          "whose file locks network file systems do not keep across machines. Give --storage "
                          "postgresql://USER:PASSWORD@HOST/DB (a server the nodes reach), or --cluster local.")
    if cluster == "slurm":
        check_with_scheduler(options, workers)
    return cluster


def search_worker(config_json: str) -> None:
    """What each job runs: trials on the shared study until it holds its trials (no final evaluation).
    Cancelled, it fails its running trial at once (as Ctrl-C does) and the others fill the slot."""
    stop_on_sigterm()
    import optuna
    import torch

    cores = job_cores()
    if cores:
        torch.set_num_threads(cores)

    from pxp_bench.optimize.study import run_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run_study(config_from_json(config_json), evaluate_best=False)


def submit_workers(config: StudyConfig, workers: int, options: Mapping[str, str]) -> list:
    """Submit ``workers`` search-only workers as one job array (logs in ``<out>/slurm``); their samplers'
    seeds differ (``StudyConfig.worker``)."""
    executor, _ = make_executor(Path(config.out) / "slurm", options, "pxp-bench-worker", workers)
    configs = [config_to_json(dataclasses.replace(config, worker=index)) for index in range(1, workers + 1)]
    return submit_array(executor, search_worker, configs, Path(config.out) / "slurm")


def follow(jobs: Sequence, cluster: str, on_look: Callable[[], None], on_status: Callable[[str], None]) -> list[str]:
    """Wait for the workers' jobs, calling ``on_look`` at each look and ``on_status`` when their states
    change; returns one line per job that ended without finishing. Interrupted (Ctrl-C), it cancels the
    jobs still there: their finished trials are kept, their running ones retried on resume."""
    report = state_reporter(jobs, "workers", on_status)

    def look() -> None:
        on_look()
        report()

    failures = []
    try:
        for _, why in ended(jobs, cluster, look):
            if why is not None:
                failures.append(f"worker {why}")
    except BaseException:
        cancel(jobs, cluster)  # the ended ones too: cancelling an ended job does nothing
        raise
    look()
    return failures

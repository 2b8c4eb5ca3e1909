"""Built-in executor plugin: ``local`` (a process per cell on this machine) and ``slurm`` (a submitit
job array). Third-party executors register the same way (`pxp_bench.specs.ExecutorSpec`)."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import ExecutorSpec

SLURM_OPTIONS = {
    "partition": "SLURM partition (default: the cluster's)",
    "gpus": "GPUs per job (default 1 on SLURM, 0 with --cluster local)",
    "time_limit": "minutes per cell before SLURM stops it (default 120)",
    "array_size": "cells of the array running at once (default: --jobs)",
    "cpus": "CPU cores per job (default 8)",
    "mem_gb": "memory per job in GB (default 32)",
    "cluster": "slurm (default) or local: submitit's local executor, the same submission path on this machine",
}


@hookimpl
def register_executors(register) -> None:
    register(ExecutorSpec("local", "pxp_bench.suites.local:run_local",
                          "this machine: --jobs cells at a time, each in a process of its own"))
    register(ExecutorSpec("slurm", "pxp_bench.suites.slurm:run_slurm",
                          "a SLURM cluster through submitit: one job array, results in the shared --out folder",
                          options=SLURM_OPTIONS))

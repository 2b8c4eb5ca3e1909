"""Built-in executor plugin: ``local`` (a process per cell on this machine) and ``slurm`` (a submitit
job array). Third-party executors register the same way (`pxp_bench.specs.ExecutorSpec`)."""

from __future__ import annotations

from pxp_bench.cluster import OPTIONS as SLURM_OPTIONS
from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import ExecutorSpec


@hookimpl
def register_executors(register) -> None:
    register(ExecutorSpec("local", "pxp_bench.suites.local:run_local",
                          "this machine: --jobs cells at a time, each in a process of its own"))
    register(ExecutorSpec("slurm", "pxp_bench.suites.slurm:run_slurm",
                          "a SLURM cluster through submitit: one job array, results in the shared --out folder",
                          options=SLURM_OPTIONS, reports_status=True,
                          check="pxp_bench.suites.slurm:check_slurm"))

"""What a record reruns as: the `Benchmark` its fields and ``options`` describe, and whether this machine can
rerun it as it was run (the same libraries, the same kind of device, its plugins, its files)."""

from __future__ import annotations

import importlib.metadata
import platform
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from pxp_bench.plan import RECORDED_APART, Benchmark
from pxp_bench.results import RECORDED_PACKAGES


class CannotRerun(Exception):
    """Why a record cannot be rerun here (one line, for the verify table)."""


COMPARED_VERSIONS = ("python", "pxp_bench", *RECORDED_PACKAGES)
"""The versions a rerun must share with the record: floating-point results may change with any of them."""


def _here(package: str) -> str | None:
    if package == "python":
        return platform.python_version()
    try:
        return importlib.metadata.version("pxp-bench" if package == "pxp_bench" else package)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_differences(record: dict[str, Any]) -> list[str]:
    """``torch 2.13.0 recorded, 2.14.1 here`` for each compared version that differs."""
    recorded = record.get("environment") or {}
    return [f"{name} {recorded.get(name)} recorded, {_here(name)} here" for name in COMPARED_VERSIONS
            if name in recorded and recorded.get(name) != _here(name)]


CPU_DEVICE = re.compile(r"^cpu \((?P<arch>[^,]+), (?P<threads>\d+) threads?\)$")
"""`pxp_bench.device.device_name` of a CPU: its processor (or machine) and torch's thread count."""


def recorded_device(record: dict[str, Any]) -> tuple[str, int | None]:
    """The device option and CPU thread count the record ran with; `CannotRerun` where this machine has
    another kind of device."""
    name = str((record.get("environment") or {}).get("device"))
    found = CPU_DEVICE.match(name)
    if found:
        here = platform.processor() or platform.machine()
        if found["arch"] != here:
            raise CannotRerun(f"it ran on a {found['arch']} CPU, this machine's is {here}")
        return "cpu", int(found["threads"])
    import torch

    if not torch.cuda.is_available():
        raise CannotRerun(f"it ran on {name}; this machine has no CUDA device")
    if torch.cuda.get_device_name(0) != name:
        raise CannotRerun(f"it ran on {name}, this machine's GPU is {torch.cuda.get_device_name(0)}")
    return "cuda", None


def benchmark_of(record: dict[str, Any], device: str) -> Benchmark:
    """The `Benchmark` that ran ``record``, on ``device``, without latency timing and without agreement (which
    do not change its curve); `CannotRerun` when the record does not keep its options."""
    options = record.get("options")
    if not isinstance(options, dict):
        raise CannotRerun("it does not record its run options (made by an older pxp-bench); rerun it with this "
                          "version")
    known = {f.name for f in fields(Benchmark)} - RECORDED_APART
    unknown = sorted(set(options) - known)
    if unknown:
        raise CannotRerun(f"it records options this pxp-bench does not have ({', '.join(unknown)})")
    given = dict(options)
    if given.get("data_root") is not None:
        given["data_root"] = Path(given["data_root"])
    return Benchmark(**{**given, "device": device, "latency_repeats": 0, "agreement": False},
                     model=record["model"], method=record["method"], dataset=record["dataset"],
                     components=record["components"], rates=tuple(record["rates"]), seed=record["seed"],
                     params=dict(record["params"]), variant=record["variant"])


def rerun_benchmark(record: dict[str, Any]) -> tuple[Benchmark, int | None]:
    """The `Benchmark` that reruns ``record`` here and the CPU thread count it ran with; `CannotRerun` where
    this machine cannot run it as it was run (other library versions or device, saved scores)."""
    if record.get("scores_source") is not None:
        raise CannotRerun(f"it evaluated saved scores ({record['scores_source']}); verify the run that saved them")
    differences = version_differences(record)
    if differences:
        raise CannotRerun(f"other library versions ({'; '.join(differences)})")
    device, threads = recorded_device(record)
    return benchmark_of(record, device), threads

"""The ``local`` executor: at most ``jobs`` cells at a time, each in a process of its own.

A process per cell isolates crashes and out-of-memory kills (a process pool would break as a whole),
and on Linux a fork server that has imported torch and pxp-bench once starts each of them in a
fraction of a second instead of the seconds a fresh interpreter needs.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import wait
from typing import Callable, Mapping

from pxp_bench.suites.cells import CellTask, execute_cell

PRELOAD = ["pxp_bench.suites.cells", "pxp_bench.benchmark", "pxp_bench.plugins", "torchvision", "timm",
           # what the built-in datasets and methods import when first used: scikit-learn alone takes ~2 s
           "sklearn.datasets", "sklearn.model_selection", "zennit.composites", "captum.attr", "torch_pruning"]


def _context():
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def describe_exit(code: int) -> str:
    """Why a cell's process ended without recording an outcome."""
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"the cell's process died of {name}{hint}"
    return f"the cell's process exited with code {code}"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_local(tasks: list[CellTask], *, jobs: int, options: Mapping[str, str],
              on_done: Callable[[CellTask, str | None], None]) -> None:
    context = _context()
    queue = list(reversed(tasks))
    running: dict[int, tuple[multiprocessing.process.BaseProcess, CellTask]] = {}
    try:
        while queue or running:
            while queue and len(running) < jobs:
                task = queue.pop()
                process = context.Process(target=execute_cell, args=(task,), name=f"cell-{task.key}")
                process.start()
                running[process.sentinel] = (process, task)
            for sentinel in wait(list(running)):
                process, task = running.pop(sentinel)
                process.join()
                on_done(task, None if process.exitcode == 0 else describe_exit(process.exitcode))
    finally:  # interrupted: stop the cells still running; their records stay unwritten, so they rerun
        for process, _ in running.values():
            process.terminate()
            process.join()

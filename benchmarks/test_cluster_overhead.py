"""What the real scheduler adds per suite cell (issue 32's target: at most 5 s more than the local executor).

The same 4 cheap cells (tests/helpers.py's TINY_SUITE: magnitude and random on digits-vgg filters, seeds 0
and 1) through ``suite run --executor local`` and ``--executor slurm`` (one cell at a time each, on 2 cores:
a SLURM job of 2 cores and 2 GB) into fresh folders; ``extra_info`` holds both wall times and the overhead per cell.
The local executor starts each cell from a fork server that has imported torch once; a SLURM job starts
a fresh interpreter on its node, which is most of the difference. Needs a SLURM cluster (`.ci/slurm.sh`)
and runs under ``make bench`` only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import TINY_SUITE  # noqa: E402

CELLS = 4
OVERHEAD_TARGET_S = 5.0


def _suite_run(suite: Path, out: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from pxp_bench.cli import main; main()", "suite", "run", str(suite),
                           "--out", str(out), *args], capture_output=True, text=True,
                          env={**os.environ, "PXP_BENCH_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{CELLS} cells finished now" in done.stdout
    return time.perf_counter() - started


def test_a_cell_through_slurm_against_the_local_executor(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("runs under `make bench` only")
    if shutil.which("sbatch") is None:
        pytest.skip("no SLURM here (`sudo bash .ci/slurm.sh` starts a single-node cluster)")
    suite = tmp_path / "tiny.toml"
    suite.write_text(textwrap.dedent(TINY_SUITE))
    local_s = _suite_run(suite, tmp_path / "local")
    slurm_s = benchmark.pedantic(_suite_run, args=(suite, tmp_path / "slurm", "--executor", "slurm", "--cpus", "2",
                                                   "--mem-gb", "2", "--gpus", "0"), rounds=1, iterations=1)
    overhead = (slurm_s - local_s) / CELLS
    benchmark.extra_info.update({"cells": CELLS, "local_s": round(local_s, 1), "slurm_s": round(slurm_s, 1),
                                 "overhead_per_cell_s": round(overhead, 1)})
    assert overhead <= OVERHEAD_TARGET_S, f"{overhead:.1f} s more per cell through SLURM"

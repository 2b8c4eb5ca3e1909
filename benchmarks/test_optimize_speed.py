"""Optimisation speed on digits-vgg filters with LRP (PROTOCOL section 5; figures in the README).

Evaluation reuse plus the (default) Wilcoxon pruner against neither, at an equal budget of trials: the ratio of
trials per minute and both best tuning A_PRs land in ``extra_info``. Heavy on a CPU: ``make bench`` only.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest

from pxp_bench.optimize.config import StudyConfig
from pxp_bench.optimize.study import run_study
from pxp_bench.plan import Benchmark

TRIALS = 24


def _study(out: Path, *, fast: bool):
    config = StudyConfig(Benchmark(method="lrp", tune_per_class=20), seeds=(0, 1, 2), trials=TRIALS, out=out, reuse=fast,
                         pruner="wilcoxon" if fast else "none")
    started = time.perf_counter()
    outcome = run_study(config, evaluate_best=False)
    return outcome, time.perf_counter() - started


def test_reuse_and_pruner_against_neither(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plain, plain_s = _study(tmp_path / "plain", fast=False)
    fast, fast_s = benchmark.pedantic(lambda: _study(tmp_path / "fast", fast=True), rounds=1, iterations=1)
    benchmark.extra_info.update({
        "trials_per_minute_fast": round(TRIALS / fast_s * 60, 1),
        "trials_per_minute_plain": round(TRIALS / plain_s * 60, 1),
        "speedup": round(plain_s / fast_s, 2),
        "best_tuning_a_pr_fast": round(fast.best_value, 4),
        "best_tuning_a_pr_plain": round(plain.best_value, 4),
        "reuse_hit_rate": round(fast.reuse["hit_rate"], 3),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in fast.study.trials),
    })

"""Many workers on one study in a real PostgreSQL: no trial lost, a killed worker's trial retried.

`.ci/run` starts the server (`.ci/postgres.sh`) and sets PXP_BENCH_REQUIRE_POSTGRES, so in CI these
tests run; elsewhere they run when PXP_BENCH_TEST_POSTGRES names a database, and skip otherwise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest

pytestmark = pytest.mark.workers  # every test here starts worker processes on a shared PostgreSQL study

WORKER = """
import sys
from pathlib import Path

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)
from pxp_bench.optimize.config import StudyConfig
from pxp_bench.optimize.study import run_study
from pxp_bench.plan import Benchmark

url, name, trials, n_samples, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
bench = Benchmark(method="smoothgrad", n_classes=3, ref_per_class=5, tune_per_class=5, rates=(0.0, 0.3, 0.6),
                  params={"n_samples": n_samples})
run_study(StudyConfig(bench, seeds=(0,), optimizer="random", trials=trials, storage=url, study=name, out=out,
                      heartbeat_s=1, grace_s=2))
"""



def _worker(url: str, name: str, trials: int, n_samples: int, out) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PXP_BENCH_LOAD_PLUGINS="")
    return subprocess.Popen([sys.executable, "-c", WORKER, url, name, str(trials), str(n_samples), str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]


def test_two_workers_share_one_study_and_lose_no_trial(postgres_url, tmp_path):
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    workers = [_worker(postgres_url, name, 6, 2, tmp_path / str(i)) for i in range(2)]
    for worker in workers:
        _finish(worker)
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    states = {t.state for t in trials}
    assert states == {optuna.trial.TrialState.COMPLETE}, states
    # each worker claims a slot before it starts a trial: they stop together at exactly 6
    assert len(trials) == 6


def test_a_killed_worker_leaves_the_study_usable_and_its_trial_is_retried(postgres_url, tmp_path):
    name = f"killed-worker-{uuid.uuid4().hex[:8]}"
    doomed = _worker(postgres_url, name, 2, 200, tmp_path / "doomed")
    deadline = time.monotonic() + 120
    running = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            study = optuna.load_study(study_name=name, storage=postgres_url)
        except KeyError:  # not created yet
            continue
        # killed before it suggests its parameters, a trial has none to retry: wait for them
        running = [trial for trial in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)) if trial.params]
    assert running, "the worker never started a trial"
    time.sleep(1)  # its parameters are suggested one after another within milliseconds; scoring takes far longer
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    time.sleep(3)  # past the 2 s grace period: its trial is stale
    _finish(_worker(postgres_url, name, 2, 200, tmp_path / "survivor"))
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    killed = trials[running[0].number]
    assert killed.state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retries and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert killed.params and retries[0].params == killed.params
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]

"""A real SLURM cluster (single node, `.ci/slurm.sh`): suite cells as array jobs, a cancelled job reported
and resumed, the executor's options read back from the scheduler, refusals before anything is written,
and optimisation workers as jobs sharing a real PostgreSQL study, one of them cancelled mid-way.

`.ci/run` starts the cluster and sets PXP_BENCH_REQUIRE_SLURM, so in CI these tests run; elsewhere they
run where `sinfo` answers, and skip otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import optuna
import pytest

from helpers import TINY_SUITE

pytestmark = pytest.mark.cluster
CLI = [sys.executable, "-c", "from pxp_bench.cli import main; main()"]
# what a job of these tests may ask of the CI node (2 cores, no GPU)
SMALL = ["--cpus", "1", "--mem-gb", "2", "--gpus", "0"]
TWO_CELLS = TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]")


@pytest.fixture(scope="module")
def slurm() -> None:
    try:
        answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        up = answer.returncode == 0 and any(state.startswith(("idle", "mix", "alloc"))
                                            for state in answer.stdout.split())
    except FileNotFoundError:
        up = False
    if not up:
        if os.environ.get("PXP_BENCH_REQUIRE_SLURM"):
            pytest.fail("PXP_BENCH_REQUIRE_SLURM is set but no SLURM answers here: start it with `source .ci/slurm.sh`.")
        pytest.skip("no SLURM cluster here (`sinfo` shows no node up); `sudo bash .ci/slurm.sh` starts one")


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", "PXP_BENCH_LOAD_PLUGINS": ""})


def _suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "pair.toml"
    path.write_text(textwrap.dedent(TWO_CELLS))
    return path


def _records(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((out / "cells").glob("*.json"))}


def _array_id(output: str) -> str:
    found = re.search(r"jobs (\d+): ", output)
    assert found, output
    return found.group(1)


def _job(job_id: str) -> dict[str, str]:
    """``scontrol show job``'s fields of one array task (the scheduler keeps ended jobs for MinJobAge)."""
    shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", shown))


def test_suite_cells_run_as_array_jobs_with_the_options_given(slurm, tmp_path):
    out = tmp_path / "out"
    done = _cli("suite", "run", str(_suite_file(tmp_path)), "--out", str(out), "--executor", "slurm", "--jobs", "2",
                "--array-size", "1", "--partition", "long", "--time-limit", "7", *SMALL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 cells finished now, 0 before, 0 failed, of 2" in done.stdout
    assert {record["status"] for record in _records(out).values()} == {"done"}
    assert len(list(out.glob("*.json"))) == 2
    # the progress says what the jobs do, as it changes
    states = re.findall(r"jobs \d+: (.*)", done.stderr)
    assert states[-1] == "2 COMPLETED" and any("RUNNING" in line or "PENDING" in line for line in states), states
    array = _array_id(done.stderr)
    for task in (0, 1):
        job = _job(f"{array}_{task}")
        assert (job["JobName"], job["Partition"], job["TimeLimit"], job["NumCPUs"]) == (
            "pxp-bench-cell", "long", "00:07:00", "1"), job
        assert job["MinMemoryNode"] == "2G", job
    assert _job(f"{array}_0")["ArrayTaskThrottle"] == "1"  # --array-size, not --jobs


def test_a_cancelled_cell_is_reported_failed_and_the_rerun_runs_exactly_it(slurm, tmp_path):
    out, suite = tmp_path / "out", _suite_file(tmp_path)
    args = ["suite", "run", str(suite), "--out", str(out), "--executor", "slurm", "--jobs", "2", *SMALL]
    running = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "200", "PXP_BENCH_LOAD_PLUGINS": ""})
    deadline, victim = time.monotonic() + 120, ""
    while not victim and time.monotonic() < deadline:
        time.sleep(0.2)
        jobs = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%o"], capture_output=True, text=True).stdout
        # this run's jobs: their submission script lies in its output folder
        victim = next((line.split("|")[0] for line in jobs.splitlines() if str(out) in line), "")
    assert victim, "no cell's job ever ran"
    subprocess.run(["scancel", victim], check=True)
    stdout, stderr = running.communicate(timeout=300)
    assert running.returncode == 1, stdout + stderr
    assert "1 cells finished now, 0 before, 1 failed, of 2" in stdout, stdout
    assert re.search(rf"failed .*: the cell's job {victim} ended CANCELLED", stdout), stdout
    assert "--retry-failed" in stdout
    statuses = sorted(record["status"] for record in _records(out).values())
    assert statuses == ["done", "failed"]
    again = _cli(*args, "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 cells finished now, 1 before, 0 failed, of 2" in again.stdout


def test_what_the_scheduler_refuses_is_one_line_and_nothing_is_written(slurm, tmp_path):
    out = tmp_path / "out"
    done = _cli("suite", "run", str(_suite_file(tmp_path)), "--out", str(out), "--executor", "slurm", *SMALL,
                "--partition", "nowhere")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "SLURM refuses the jobs (" in done.stderr and "Invalid partition name specified" in done.stderr
    assert "--partition=nowhere" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("options, reason", [({"mem_gb": "100000"}, "Requested node configuration is not available"),
                                             ({"gpus": "1"}, "Invalid generic resource"),
                                             ({"cpus": "512"}, "Requested node configuration is not available")])
def test_more_than_the_nodes_have_is_refused_before_submitting(slurm, plugins, tmp_path, options, reason):
    from pxp_bench.errors import ConfigError
    from pxp_bench.suites.definition import load_suite
    from pxp_bench.suites.runner import run_suite

    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=reason):
        run_suite(load_suite(str(_suite_file(tmp_path)), plugins), out, plugins, executor="slurm",
                  options={"cpus": "1", "mem_gb": "2", "gpus": "0", **options})
    assert not out.exists()


OPTIMIZE = ["optimize", "--method", "lrp", "--model", "digits-vgg", "--rates", "0,0.3,0.6", "--tune-per-class", "5",
            "--ref-per-class", "5", "--classes", "3"]


def test_cluster_workers_refuse_a_study_kept_in_files(slurm, tmp_path):
    for storage in ([], ["--storage", f"sqlite:///{tmp_path}/study.db"]):
        done = _cli(*OPTIMIZE, "--trials", "2", "--executor", "slurm", *SMALL, *storage, "--out", str(tmp_path / "out"))
        assert done.returncode == 2 and "share the study through a database server" in done.stderr, done.stderr
        assert not (tmp_path / "out").exists() and not (tmp_path / "study.db").exists()



def test_optimize_runs_its_workers_as_cluster_jobs(slurm, postgres_url, tmp_path):
    name, out = f"cluster-{uuid.uuid4().hex[:8]}", tmp_path / "out"
    command = [*OPTIMIZE, "--executor", "slurm", "--workers", "2", *SMALL, "--storage", postgres_url, "--study", name,
               "--out", str(out)]
    detached = _cli(*command, "--trials", "2", "--detach")
    assert detached.returncode == 0, detached.stdout + detached.stderr
    array = re.search(r"submitted as job array (\d+)", detached.stdout).group(1)
    assert f"squeue -j {array}" in detached.stdout and not list(out.glob("*.best.json"))
    deadline = time.monotonic() + 180
    while subprocess.run(["squeue", "-h", "-j", array], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the detached workers never ended"
        time.sleep(1)
    # followed: one more trial by new workers, then the best evaluated here
    followed = _cli(*command, "--trials", "3")
    assert followed.returncode == 0, followed.stdout + followed.stderr
    assert re.search(r"workers \d+: 2 COMPLETED", followed.stderr), followed.stderr
    assert (out / f"{name}.best.json").exists() and "evaluation A_PR of the best" in followed.stdout
    trials = optuna.load_study(study_name=name, storage=postgres_url).trials
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)  # the pruner may stop one
    assert len(trials) == 3 and all(t.state in finished for t in trials), [t.state for t in trials]
    assert len(list((out / "slurm").glob("*/*_log.out"))) == 4  # the two arrays' workers' logs


def test_a_cancelled_worker_job_loses_no_trial(slurm, postgres_url, tmp_path):
    """One of two worker jobs cancelled mid-trial: its trial is failed, the other worker fills the slot, and
    the study ends with all its trials (the command's own functions). A worker killed outright is failed
    by the heartbeat instead and retried (tests/test_optimize_workers.py)."""
    from pxp_bench.optimize.cluster import follow, submit_workers
    from pxp_bench.optimize.config import StudyConfig
    from pxp_bench.optimize.study import StudyRun
    from pxp_bench.plan import Benchmark

    bench = Benchmark(method="smoothgrad", n_classes=3, ref_per_class=5, tune_per_class=5, rates=(0.0, 0.3, 0.6),
                      params={"n_samples": 80})
    config = StudyConfig(bench, seeds=(0,), optimizer="random", trials=3, storage=postgres_url,
                         study=f"cancelled-{uuid.uuid4().hex[:8]}", out=tmp_path / "out")
    run = StudyRun(config)
    options = {"cpus": "1", "mem_gb": "2", "gpus": "0"}
    jobs = submit_workers(config, 2, options)
    deadline, victim = time.monotonic() + 120, None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.1)
        running = run.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if len([t for t in running if t.params]) == 2:  # each worker in a trial: the first job's is cut short
            victim = jobs[0]
    assert victim is not None, "the two workers were never in a trial together"
    subprocess.run(["scancel", victim.job_id], check=True)
    failures = follow(jobs, "slurm", lambda: None, lambda _: None)
    assert len(failures) == 1 and f"job {victim.job_id} ended CANCELLED" in failures[0], failures
    trials = run.study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 3, [t.state for t in trials]
    # the cancelled job failed its trial at once (SIGTERM, as Ctrl-C): its slot was filled by the other worker
    assert len([t for t in trials if t.state == optuna.trial.TrialState.FAIL]) == 1, [t.state for t in trials]
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert run.outcome(evaluate_best=False).best_value is not None


def test_a_job_that_raised_is_reported_by_its_error_not_its_log_paths(tmp_path):
    """submitit's message for a raised error ends with the log files' paths: the line says the error."""
    from pxp_bench.cluster import ended, make_executor, submit_array

    executor, cluster = make_executor(tmp_path / "jobs", {"cluster": "local", "gpus": "0"}, "pxp-bench-test", 2)
    jobs = submit_array(executor, int, ["7", "boom"], tmp_path / "jobs")
    outcomes = {job.job_id: why for job, why in ended(jobs, cluster, lambda: None)}
    assert outcomes[jobs[0].job_id] is None
    why = outcomes[jobs[1].job_id]
    assert why.startswith(f"job {jobs[1].job_id} failed (FailedJobError: ValueError: invalid literal for int()"), why

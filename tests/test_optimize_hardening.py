"""`pxp-bench optimize` against bad input and process faults: proposals outside the space, damaged
journals, names that are paths, bad options, too many workers, a killed or interrupted command, a trial
whose process died, noisy storages."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from helpers import QUICK_RATES, as_at_a_terminal
from pxp_bench.attribution.options import GRADIENT_OPTIONS
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.hookspecs import hookimpl
from pxp_bench.optimize.config import StudyConfig
from pxp_bench.optimize.study import run_study
from pxp_bench.params import FloatRange, IntRange
from pxp_bench.plan import Benchmark
from pxp_bench.plugins import Plugins, plugin_culprit
from pxp_bench.specs import MethodSpec, OptimizerSpec

SMALL = Benchmark(method="taylor", n_classes=3, tune_per_class=5, rates=QUICK_RATES)
TINY = ["--method", "taylor", "--classes", "3", "--tune-per-class", "5", "--rates", "0,0.3,0.6"]
NAME = "digits-vgg_filters_taylor_seeds0"
RUNNING, FAIL, COMPLETE = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.COMPLETE)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


def config(tmp_path, **overrides) -> StudyConfig:
    return StudyConfig(**({"bench": SMALL, "seeds": (0,), "trials": 2, "out": tmp_path, "optimizer": "random"}
                          | overrides))


def journal_trials(path: Path, name: str = NAME) -> list[optuna.trial.FrozenTrial]:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.load_study(study_name=name, storage=storage).trials


def exceeding(study, space, objective, *, trials, timeout, seed, callbacks=()):
    """A plugin optimizer that proposes through the queue, past the space's upper bound."""
    study.enqueue_trial({"sigma": 4.5})
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=list(callbacks))


def off_choices(study, space, objective, *, trials, timeout, seed, callbacks=()):
    """A plugin optimizer that proposes a choice the space does not have."""
    study.enqueue_trial({"aggregation": "bogus"})
    study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=list(callbacks))


class ExceedingPlugin:
    """The optimizer above, and smoothgrad with its ``sigma`` (a float in [0, 1]) searched."""

    @hookimpl
    def register_optimizers(self, register):
        register(OptimizerSpec("exceeding", f"{__name__}:exceeding", "proposes sigma=4.5"))
        register(OptimizerSpec("off-choices", f"{__name__}:off_choices", "proposes aggregation=bogus"))

    @hookimpl
    def register_methods(self, register):
        register(MethodSpec(name="smoothgrad-sigma", score="pxp_bench.attribution.gradients:smoothgrad_scores",
                            summary="smoothgrad, sigma searched",
                            params={"sigma": FloatRange(0.0, 1.0, 0.15),
                                    "n_samples": IntRange(1, 1000, 2, searched=False),
                                    **{k: dataclasses.replace(p, searched=False)
                                       for k, p in GRADIENT_OPTIONS.items()}}))


@pytest.mark.parametrize("optimizer, method, proposed", [("exceeding", "smoothgrad-sigma", "sigma=4.5"),
                                                          ("off-choices", "taylor", "'bogus'")])
def test_a_proposal_outside_the_space_is_refused_naming_the_optimizer_and_its_plugin(tmp_path, optimizer, method,
                                                                                     proposed):
    plugins = Plugins(load_external=False, extra=(ExceedingPlugin(),))
    owner = plugins.optimizers.owner(optimizer)
    info = plugins.infos[owner]  # as if installed: named with its distribution and version, as a method is
    info.distribution, info.version = "pxp-bench-exceeding", "1.2.3"
    bench = dataclasses.replace(SMALL, method=method)
    with pytest.raises(ConfigError) as refused:
        run_study(config(tmp_path, bench=bench, optimizer=optimizer, trials=3), plugins=plugins)
    message = str(refused.value)
    assert message.startswith(f"optimizer '{optimizer}' from plugin '{owner}' (pxp-bench-exceeding 1.2.3) proposed")
    assert plugin_culprit(plugins, f"optimizer '{optimizer}'", owner) in message and proposed in message
    assert "outside the searched space" in message and "\n" not in message
    name = f"digits-vgg_filters_{method}_seeds0"
    evaluated = [t for t in journal_trials(tmp_path / f"{name}.journal", name) if t.state == COMPLETE]
    assert [t.user_attrs.get("default") for t in evaluated] == [True]  # the default ran, the proposal never did


def _journal_of_an_empty_study(path: Path) -> bytes:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    optuna.create_study(study_name=NAME, storage=storage, direction="maximize")
    return path.read_bytes()


@pytest.mark.parametrize("damage, line", [("cut", 2), ("garbage", 2)])
def test_a_damaged_journal_is_refused_and_never_written(tmp_path, damage, line):
    journal = tmp_path / f"{NAME}.journal"
    intact = _journal_of_an_empty_study(journal)  # one line: the study
    extra = b'{"op_code": 4, "worker_id": "x", "study_id"' if damage == "cut" else b"not json\n" + intact
    journal.write_bytes(intact + extra)
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "1", "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and str(journal) in " ".join(result.output.split())
    assert f"line {line}" in lines[0] and "--study" in lines[0] and "Traceback" not in result.output
    assert journal.read_bytes() == intact + extra


@pytest.mark.parametrize("name", ["../escaped", "a/b", "", ".hidden", "..", "x\\y", "tab\tname"])
def test_a_study_name_that_is_a_path_is_refused(tmp_path, name):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "1", "--study", name, "--out", str(out)])
    assert result.exit_code == 2 and "is not a plain name" in result.output, result.output
    assert list(tmp_path.iterdir()) == []  # nothing written, in --out or beside it


@pytest.mark.parametrize(("model", "made"), [("hf:/data/models/Qwen2.5-0.5B", "hf-data-models-Qwen2.5-0.5B"),
                                           ("hf:Qwen/Qwen2.5-0.5B", "hf-Qwen-Qwen2.5-0.5B"),
                                           ("timm/resnet10t", "timm-resnet10t"), ("digits-vgg", "digits-vgg")])
def test_a_made_study_name_turns_the_model_name_into_a_plain_name(model, made):
    from pxp_bench.optimize.config import study_name

    assert study_name(StudyConfig(Benchmark(model=model), seeds=(0, 1)), "heads", "lrp") == f"{made}_heads_lrp_seeds0-1"


@pytest.mark.parametrize("timeout", [math.nan, math.inf, -math.inf])
def test_a_timeout_that_is_not_a_positive_finite_number_is_refused(tmp_path, timeout):
    with pytest.raises(ConfigError, match="--timeout must be a positive, finite number"):
        run_study(config(tmp_path, timeout=timeout))


@pytest.mark.workers
def test_jobs_are_capped_by_cores_and_memory_with_a_line_saying_so(tmp_path):
    cores = len(os.sched_getaffinity(0))
    jobs = cores + 1  # enough to be capped; not 100, which would start 99 processes were the cap gone
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "2", "--optimizer", "random", "--jobs", str(jobs),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    capped = [line for line in result.output.splitlines() if f"--jobs {jobs} capped to" in line]
    assert len(capped) == 1 and f"{cores} CPU core" in capped[0] and "GB per worker of" in capped[0], result.output
    # each process that opened the journal writes under its own worker id (a uuid, then the thread)
    processes = {json.loads(line)["worker_id"][:36]
                 for line in (tmp_path / f"{NAME}.journal").read_text().splitlines()}
    assert 1 <= len(processes) <= int(capped[0].split("capped to ")[1].split(":")[0]) <= cores


def _command(out: Path, *options: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PXP_BENCH_LOAD_PLUGINS="")
    return subprocess.Popen([sys.executable, "-c", "from pxp_bench.cli import main; main()", "optimize", *TINY,
                             "--optimizer", "random", "--out", str(out), *options],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=as_at_a_terminal)


def _workers_of(parent: int) -> list[int]:
    """Live worker processes whose parent is ``parent`` (zombies, already dead, do not count)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and b"pxp_bench.optimize.worker" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.workers
@pytest.mark.e2e
@linux_only
def test_workers_die_with_a_killed_command(tmp_path):
    command = _command(tmp_path, "--trials", "200", "--jobs", "2")
    workers = []
    try:
        workers = _wait_for(lambda: _workers_of(command.pid), 240, "a worker to start")
        time.sleep(1)
        command.send_signal(signal.SIGKILL)
        command.communicate(timeout=30)
        _wait_for(lambda: not any(_alive(pid) for pid in workers), 5, "the orphaned worker to die")
    finally:
        _kill(command, workers)


def _kill(command: subprocess.Popen, workers: list[int]) -> None:
    if command.poll() is None:
        command.kill()
        command.communicate()
    for pid in filter(_alive, workers):
        os.kill(pid, signal.SIGKILL)


SET_TRIAL_PARAM = 5
"""The journal's operation code of a trial's suggested parameter (Optuna's ``JournalOperation``)."""


def _processes_in_trials(journal: Path) -> int:
    """How many processes have suggested a trial's parameters in ``journal``: each writes under its own worker
    id (a uuid, then the thread); a line being written (no newline yet) is not read."""
    if not journal.exists():
        return 0
    lines = [json.loads(line) for line in journal.read_text().split("\n")[:-1]]
    return len({line["worker_id"][:36] for line in lines if line["op_code"] == SET_TRIAL_PARAM})


@pytest.mark.workers
@pytest.mark.e2e
@linux_only
def test_ctrl_c_stops_the_workers_and_says_what_is_kept_in_one_line(tmp_path):
    # repeated proposals are answered from the memo in milliseconds: a study that could finish races the signal
    command = _command(tmp_path, "--trials", "100000", "--jobs", "2")
    journal = tmp_path / f"{NAME}.journal"
    workers = []
    try:
        workers = _wait_for(lambda: _workers_of(command.pid), 240, "a worker to start")
        # ready when the worker too is in a trial, however slowly a loaded machine got it there (not a fixed sleep)
        _wait_for(lambda: _processes_in_trials(journal) == 2, 240, "the command and its worker in trials")
        _wait_for(lambda: any(t.state == COMPLETE for t in journal_trials(journal)), 240, "a finished trial")
        command.send_signal(signal.SIGINT)
        _, stderr = command.communicate(timeout=60)  # the command ends within 5 s of the signal, whatever holds it
        _wait_for(lambda: not any(_alive(pid) for pid in workers), 5, "the workers to stop")
    finally:
        _kill(command, workers)
    assert command.returncode == 130, stderr
    said = [line for line in stderr.splitlines() if line.strip() and not line.startswith("trials ")]
    assert len(said) == 1 and said[0].startswith("Interrupted: ") and str(journal) in said[0], stderr
    assert "rerun the same command to resume" in said[0]
    finished = int(said[0].split("Interrupted: ")[1].split()[0])
    assert finished == sum(t.state == COMPLETE or t.state == optuna.trial.TrialState.PRUNED
                           for t in journal_trials(journal))


def test_a_trial_of_a_dead_process_is_failed_and_retried_on_resume(tmp_path, plugins):
    fast = {"heartbeat_s": 1, "grace_s": 2}
    run_study(config(tmp_path, trials=1, **fast), plugins=plugins, evaluate_best=False)
    study = optuna.load_study(study_name=NAME, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / f"{NAME}.journal"))))
    stale = study.ask()  # as a process killed mid-trial leaves it: RUNNING, with no one to finish it
    stale.suggest_categorical("aggregation", list(GRADIENT_OPTIONS["aggregation"].choices))
    time.sleep(2.5)  # silent past the grace period
    outcome = run_study(config(tmp_path, trials=3, **fast), plugins=plugins, evaluate_best=False)
    trials = journal_trials(tmp_path / f"{NAME}.journal")
    assert trials[stale.number].state == FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == stale.number]
    assert len(retried) == 1 and retried[0].state == COMPLETE and retried[0].params == stale.params
    assert sum(t.state == COMPLETE for t in outcome.study.trials) == 3
    assert not [t for t in trials if t.state == RUNNING]


def test_an_rdb_study_prints_no_optuna_warnings_and_a_refusal_no_progress(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "1", "--storage", url, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.output
    refused = CliRunner().invoke(app, ["optimize", *TINY[2:], "--method", "random", "--trials", "3", "--storage",
                                       url, "--out", str(tmp_path)])
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [line for line in refused.output.strip().splitlines()
                                                   if line.startswith("Error:")], refused.output


@pytest.mark.parametrize("seeds", ["4294967296", "99999999999999999999"])
def test_seeds_out_of_range_leave_nothing_written(tmp_path, seeds):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "1", "--seeds", seeds, "--out", str(out)])
    assert result.exit_code == 2 and "--seeds" in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--workers", "2"], "--workers is for --executor slurm; on this machine give --jobs"),
    (["--partition", "gpu", "--detach"], "--detach, --partition are for --executor slurm"),
    (["--executor", "slurm", "--jobs", "2"], "with --executor slurm give --workers"),
    (["--executor", "dask"], "--executor must be local or slurm for optimize"),
    (["--executor", "slurm", "--cluster", "local", "--workers", "0"], "--workers must be at least 1"),
    (["--executor", "slurm", "--cluster", "local", "--detach"], "--detach leaves the workers to a scheduler"),
])
def test_cluster_options_out_of_place_leave_nothing_written(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["optimize", *TINY, "--trials", "1", *args, "--out", str(out)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and not out.exists()

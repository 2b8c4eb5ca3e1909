"""Suites: validated TOML matrices, each cell in its own process, resumable, failures recorded, executors
as plugins (local, slurm through submitit's local executor, and an installed third-party one)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import TINY_SUITE as TINY, as_at_a_terminal, pip_install_plugin
from test_leaderboard import table_rows
from pxp_bench.errors import PxpBenchError
from pxp_bench.leaderboard import build_leaderboard
from pxp_bench.plugins import Plugins
from pxp_bench.suites.definition import load_suite

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from pxp_bench.cli import main; main()", "suite", "run"]


def _suite(tmp_path: Path, text: str = TINY, name: str = "tiny") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(textwrap.dedent(text))
    return path


def _records(out: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((out / "cells").glob("*.json"))}


def _suite_run(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.mark.parametrize("text, message", [
    ("colour = 'red'\n" + TINY, "unknown key(s) colour"),
    (TINY + "\n[run.extra]\n", "unknown option 'extra'"),
])
def test_unknown_keys_are_named(plugins, tmp_path, text, message):
    with pytest.raises(PxpBenchError) as caught:
        load_suite(str(_suite(tmp_path, text)), plugins)
    assert message in str(caught.value)


@pytest.mark.parametrize("old, new, message", [
    ("seeds = [0, 1]", "seeds = 0", "'seeds' must be a count"),
    ('n_classes = 3', 'n_classes = "three"', "option 'n_classes' = 'three' is not valid"),
    ('components = ["filters"]', 'components = ["filter"]', "components must be among filters, neurons, heads"),
    ('method = "random"', 'method = "randm"', "unknown method 'randm'. Did you mean 'random'?"),
    ('method = "random"', 'method = "random"\npresets = ["fast"]', "method 'random' has no preset 'fast'"),
    ('method = "random"', 'method = "lrp"\nvariant = "optimised"\nparams = "{model}.json"\n'
                          'made_by = "pxp-bench optimize --model {model} --out {params_dir}"',
     "digits-vgg.json for lrp (optimised) is missing; make it with `pxp-bench optimize --model digits-vgg --out "),
    ('model = "digits-vgg"', 'model = "digits-vg"', "unknown model 'digits-vg'"),
])
def test_a_bad_suite_is_one_clear_error(plugins, tmp_path, old, new, message):
    with pytest.raises(PxpBenchError) as caught:
        load_suite(str(_suite(tmp_path, TINY.replace(old, new))), plugins)
    assert message in str(caught.value) and str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_parameters_file_is_named_as_optimize_names_a_model_with_a_path(plugins, tmp_path):
    text = TINY.replace('model = "digits-vgg"', 'model = "timm/resnet10t"').replace(
        'method = "random"', 'method = "lrp"\nvariant = "optimised"\nparams = "{model}_lrp.best.json"\n'
                             'made_by = "pxp-bench optimize --model {model}"')
    with pytest.raises(PxpBenchError) as caught:
        load_suite(str(_suite(tmp_path, text)), plugins)
    assert "timm-resnet10t_lrp.best.json for lrp (optimised) is missing" in str(caught.value)
    assert "`pxp-bench optimize --model timm/resnet10t`" in str(caught.value)


def test_the_committed_suites_are_valid_and_as_large_as_their_matrix(monkeypatch):
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "pxp-bench-example")  # the digits suite runs its wanda
    plugins = Plugins()
    digits = load_suite("digits", plugins)
    # 5 settings (vgg filters + neurons, resnet filters, vit heads + neurons); 5 methods + magnitude's layer
    # preset + 3 LRP presets + optimised LRP + wanda's 2 presets + 7 Torch-Pruning criteria
    # (not on heads; bn_scale on CNN filters only) + deeplift (CNNs) + ablation
    per_setting = {"vgg filters": 6 + 3 + 1 + 2 + 7 + 1 + 1, "vgg neurons": 6 + 3 + 1 + 2 + 6 + 1 + 1,
                   "resnet filters": 6 + 3 + 1 + 2 + 7 + 1 + 1, "vit heads": 6 + 3 + 1 + 2 + 1,
                   "vit neurons": 6 + 3 + 1 + 2 + 6 + 1}
    assert len(digits.cells) == sum(per_setting.values()) * 3 and digits.not_applicable == 11
    assert all(cell.config["agreement"] for cell in digits.cells)
    assert len({cell.key for cell in digits.cells}) == len(digits.cells)
    # digits-full: the same cells (the same keys) and gradient_shap and conductance on every setting
    full = load_suite("digits-full", plugins)
    added = [cell for cell in full.cells if cell.key not in {c.key for c in digits.cells}]
    assert {cell.key for cell in digits.cells} < {cell.key for cell in full.cells}
    assert sorted({cell.config["method"] for cell in added}) == ["conductance", "gradient_shap"]
    assert len(added) == 2 * 5 * 3 and full.not_applicable == digits.not_applicable
    optimised = [c for c in digits.cells if c.config.get("variant") == "optimised"]
    stored = json.loads((ROOT / "benchmarks/suites/digits/digits-vit_heads_lrp_seeds0-1-2.best.json").read_text())
    assert next(c for c in optimised if c.label.startswith("digits-vit/heads")).config["params"] == stored
    # lm: tiny-llama heads and neurons x (5 methods + magnitude's layer preset + 2 more LRP presets + optimised
    # LRP + ablation + wanda's 2 presets), seeds 0-2, with the stored composites
    lm = load_suite("lm", plugins)
    assert len(lm.cells) == 2 * 13 * 3 and not lm.missing and all(cell.config["agreement"] for cell in lm.cells)
    paper = load_suite("imagenet-paper", plugins, require_params=False)
    assert len(paper.cells) == 6 * 7 * 20 and len(paper.missing) == 6  # its composites come from ImageNet studies
    assert {c.config["model"] for c in paper.cells} == {"vgg16", "vgg16_bn", "resnet18", "resnet50", "vit_b_16"}


def test_a_suite_that_extends_another_adds_its_methods_to_the_same_cells(plugins, tmp_path):
    base = load_suite(str(_suite(tmp_path)), plugins)
    extended = _suite(tmp_path, f"""
        extends = "{tmp_path / 'tiny.toml'}"
        description = "tiny and taylor"

        [[methods]]
        method = "taylor"
        """, name="tiny-more")
    suite = load_suite(str(extended), plugins)
    assert suite.description == "tiny and taylor" and suite.seeds == base.seeds
    assert [cell.key for cell in suite.cells if cell.config["method"] != "taylor"] == [cell.key for cell in base.cells]
    assert len([cell for cell in suite.cells if cell.config["method"] == "taylor"]) == len(base.seeds)
    for name, text, message in [
        ("chained", f'extends = "{extended}"', "which extends another suite"),
        ("seeded", f'extends = "{tmp_path / "tiny.toml"}"\nseeds = [5]', "unknown key(s) seeds"),
        ("unknown", 'extends = "no-such-suite"', "unknown suite 'no-such-suite'"),
        ("itself", f'extends = "{tmp_path / "itself.toml"}"', "a suite cannot extend itself"),
    ]:
        with pytest.raises(PxpBenchError) as caught:
            load_suite(str(_suite(tmp_path, text, name=name)), plugins)
        assert message in str(caught.value)


def test_extends_reads_a_relative_path_beside_the_extending_file_not_the_working_directory(plugins, tmp_path,
                                                                                          monkeypatch):
    suites = tmp_path / "suites"
    suites.mkdir()
    base = load_suite(str(_suite(suites)), plugins)
    extended = _suite(suites, 'extends = "tiny.toml"\n[[methods]]\nmethod = "taylor"\n', name="tiny-more")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no tiny.toml here
    suite = load_suite(str(extended), plugins)
    assert {cell.key for cell in base.cells} < {cell.key for cell in suite.cells}
    missing = _suite(suites, 'extends = "small.toml"\n[[methods]]\nmethod = "taylor"\n', name="tiny-less")
    (elsewhere / "small.toml").write_text(textwrap.dedent(TINY))  # in the working directory: not read
    with pytest.raises(PxpBenchError) as caught:
        load_suite(str(missing), plugins)
    message = str(caught.value)
    assert str(missing) in message and 'extends = "small.toml"' in message and str(suites / "small.toml") in message
    assert "\n" not in message


@pytest.mark.suite
def test_a_method_listed_twice_is_warned_about_and_run_and_counted_once(plugins, tmp_path):
    twice = _suite(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]") + '\n[[methods]]\nmethod = "random"\n')
    with pytest.warns(UserWarning, match="random:default is listed more than once") as warned:
        suite = load_suite(str(twice), plugins)
    assert len(warned) == 1 and str(twice) in str(warned[0].message)
    assert len(suite.cells) == len({cell.key for cell in suite.cells}) == 2
    out = tmp_path / "out"
    done = _suite_run(str(twice), "--out", str(out), env={"PXP_BENCH_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stderr
    assert "2 cells finished now, 0 before, 0 failed, of 2" in done.stdout, done.stdout
    warnings_shown = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings_shown) == 1 and "random:default is listed more than once" in warnings_shown[0]
    assert "Traceback" not in done.stderr and len(list(out.glob("*.json"))) == 2


def test_a_cells_key_changes_with_any_option(plugins, tmp_path):
    base = {cell.label: cell.key for cell in load_suite(str(_suite(tmp_path)), plugins).cells}
    other = {cell.label: cell.key for cell in load_suite(str(_suite(tmp_path)), plugins,
                                                         overrides={"ref_per_class": 5}).cells}
    assert base.keys() == other.keys() and not set(base.values()) & set(other.values())


@pytest.mark.suite
def test_an_interrupted_suite_resumes_without_rerunning_finished_cells(tmp_path):
    cells = 8  # one at a time: the interrupt comes long before the last of them (a cell takes about a second)
    suite, out = _suite(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]")), tmp_path / "out"
    running = subprocess.Popen([*CLI, str(suite), "--out", str(out), "--jobs", "1"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PXP_BENCH_LOAD_PLUGINS": ""},
                               preexec_fn=as_at_a_terminal)
    deadline = time.monotonic() + 300
    while not (out / "cells").is_dir() or not _records(out):  # wait for the first finished cell
        assert running.poll() is None and time.monotonic() < deadline, running.communicate()
        time.sleep(0.2)
    running.send_signal(signal.SIGINT)
    running.communicate(timeout=120)
    before = _records(out)
    assert 1 <= len(before) < cells and all(r["status"] == "done" for r in before.values())
    done = _suite_run(str(suite), "--out", str(out), "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert f"{cells - len(before)} cells finished now, {len(before)} before, 0 failed, of {cells}" in done.stdout
    after = _records(out)
    assert all(after[key] == record for key, record in before.items())  # untouched, not rerun
    results = sorted(p.name for p in out.glob("*.json"))
    assert len(results) == cells and sorted(r["result"] for r in after.values()) == results


CRASHING = textwrap.dedent('''
    import multiprocessing
    import os
    import signal

    import pxp_bench


    def dying_scores(model, components, reference, context, **params):
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer ends a process


    def one_by_one(tasks, *, jobs, options, on_done):
        from pxp_bench.suites.cells import execute_cell

        for task in tasks:
            process = multiprocessing.get_context("spawn").Process(target=execute_cell, args=(task,))
            process.start()
            process.join()
            on_done(task, None if process.exitcode == 0 else f"one-by-one: exit {process.exitcode}")


    @pxp_bench.hookimpl
    def register_methods(register):
        register(pxp_bench.MethodSpec(name="dies", score=dying_scores, summary="killed while scoring"))


    @pxp_bench.hookimpl
    def register_executors(register):
        register(pxp_bench.ExecutorSpec(name="one-by-one", run=one_by_one, summary="a cell at a time"))
''')


@pytest.mark.suite
def test_failing_and_crashing_cells_are_recorded_and_the_rest_go_on(tmp_path):
    site = tmp_path / "site"
    pip_install_plugin(site, "pxp-suite-crash", CRASHING)
    env = {"PYTHONPATH": str(site), "PXP_BENCH_LOAD_PLUGINS": "pxp-suite-crash"}
    suite = _suite(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]").replace('method = "random"', 'method = "dies"')
                   + '\n[[settings]]\nmodel = "digits-vgg"\ncomponents = ["neurons"]\ndata_root = "/nowhere"\n')
    out = tmp_path / "out"
    first = _suite_run(str(suite), "--out", str(out), "--jobs", "2", env=env)
    assert first.returncode == 1 and "1 cells finished now, 0 before, 3 failed, of 4" in first.stdout, first.stdout
    records = {r["label"]: r for r in _records(out).values()}
    assert records["digits-vgg/filters magnitude:default seed 0"]["status"] == "done"
    died = records["digits-vgg/filters dies:default seed 0"]
    assert died["status"] == "failed" and "died of SIGKILL (killed: out of memory?)" in died["error"]
    refused = records["digits-vgg/neurons magnitude:default seed 0"]
    assert refused["status"] == "failed" and "takes no --data (it is embedded" in refused["error"]
    assert "Rerun the failed cells with --retry-failed" in first.stdout
    again = _suite_run(str(suite), "--out", str(out), env=env)  # failed cells wait for --retry-failed
    assert "0 cells finished now, 1 before, 3 failed" in again.stdout
    retried = _suite_run(str(suite), "--out", str(out), "--retry-failed", "--executor", "one-by-one", env=env)
    assert "0 cells finished now, 1 before, 3 failed" in retried.stdout
    assert "one-by-one: exit -9" in {r["label"]: r for r in _records(out).values()}[died["label"]]["error"]
    assert len(list(out.glob("*.json"))) == 1  # the finished cell was never run twice


def test_executor_options_and_jobs_are_checked(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pxp_bench.cli import app

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # a PATH without SLURM's commands
    suite = str(_suite(tmp_path))
    for args, message in [(["--jobs", "0"], "--jobs must be at least 1"),
                          (["--partition", "gpu"], "executor 'local' takes no partition"),
                          (["--executor", "slurm"], "no SLURM here (sbatch is not on PATH)"),
                          (["--executor", "slurm", "--cluster", "moon"], "--cluster must be slurm or local"),
                          (["--executor", "dask"], "unknown executor 'dask'"),
                          (["--only", "resnet*"], "--only resnet* matches no cell"),
                          (["--set", "image_size"], "--set image_size: write it as key=value")]:
        done = CliRunner().invoke(app, ["suite", "run", suite, "--out", str(tmp_path / "out"), *args])
        output = " ".join(done.output.split())
        assert done.exit_code == 2 and message in output and "Traceback" not in output, (args, output)
        assert not (tmp_path / "out").exists()


PAPER_DRY_RUN = ["--seeds", "0,1", "--set", "weights=none", "--set", "image_size=32", "--set", "rates=0,0.5",
                 "--set", "ref_per_class=1", "--set", "latency_repeats=0"]


def study_record(name: str) -> dict:
    """A stand-in for the provenance `pxp-bench optimize` writes beside a study's best parameters."""
    return {"study": name, "trial": 7, "optimizer": "optuna-tpe", "seeds": [0, 1, 2], "trials_completed": 30,
            "trials_stopped": 20, "distinct_configurations": 48, "tuning_a_pr": 0.5, "study_wall_s": 1234.5,
            "study_trial_s": 2000.0, "storage": "journal"}


@pytest.fixture(scope="module")
def paper_params(tmp_path_factory) -> Path:
    """Stand-ins for the ImageNet studies' best composites and their provenance (a dry run does not tune)."""
    folder = tmp_path_factory.mktemp("paper-params")
    for setting in ("vgg16_filters", "vgg16_bn_filters", "resnet18_filters", "resnet50_filters", "vit_b_16_heads",
                    "vit_b_16_neurons"):
        (folder / f"{setting}_lrp_seeds0-1-2.best.json").write_text(json.dumps({"low": "zplus", "mid": "gamma"}))
        (folder / f"{setting}_lrp_seeds0-1-2.provenance.json").write_text(
            json.dumps(study_record(f"{setting}_lrp_seeds0-1-2")))
    return folder


@pytest.mark.suite
def test_imagenet_paper_dry_runs_through_the_local_executor(imagenet_like, paper_params, tmp_path):
    out = tmp_path / "out"
    done = _suite_run("imagenet-paper", "--data", str(imagenet_like), "--out", str(out), "--params-dir",
                      str(paper_params), *PAPER_DRY_RUN, "--jobs", "2", "--only", "* lrp:optimised seed 0",
                      "--only", "resnet18/* seed 1", env={"PXP_BENCH_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "13 cells finished now, 0 before, 0 failed, of 13" in done.stdout
    results = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert {(r["model"], r["components"]) for r in results if r["variant"] == "optimised"} == {
        ("vgg16", "filters"), ("vgg16_bn", "filters"), ("resnet18", "filters"), ("resnet50", "filters"),
        ("vit_b_16", "heads"), ("vit_b_16", "neurons")}
    assert {r["method"] for r in results if r["model"] == "resnet18"} == {"lrp", "ig", "random", "magnitude", "taylor"}
    assert all(r["dataset"] == "imagenet" and len(r["classes"]) == 3 for r in results)
    optimised = [r for r in results if r["variant"] == "optimised"]
    assert all(r["optimisation"] == study_record(f"{r['model']}_{r['components']}_lrp_seeds0-1-2") for r in optimised)
    assert all(r["optimisation"] is None for r in results if r["variant"] != "optimised")
    board = build_leaderboard([out], tmp_path / "board", rates=(0, 0.5)).markdown.read_text()
    resnet = next(row for row in table_rows(board, "resnet18 · filters · imagenet · grid of 2 rates 0, 0.5")
                  if row["variant"] == "optimised")
    assert resnet["time"] == "study 1234 s"  # the study's cost, not the run's
    assert "study `resnet18_filters_lrp_seeds0-1-2` (optuna-tpe, tuning seeds 0, 1, 2); best trial 7; 30 trials " \
           "completed, 20 stopped, 48 distinct configurations" in board


def test_an_optimised_variant_without_its_studys_provenance_is_refused(plugins, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "digits-vgg_filters.best.json").write_text(json.dumps({"low": "zplus"}))
    suite = _suite(tmp_path, TINY + '\n[[methods]]\nmethod = "lrp"\nvariant = "optimised"\n'
                                    'params = "{model}_{components}.best.json"\n')
    with pytest.raises(PxpBenchError, match="needs the study's provenance beside .*digits-vgg_filters.best.json"):
        load_suite(str(suite), plugins)
    (folder / "digits-vgg_filters.provenance.json").write_text(json.dumps(study_record("s")))
    cells = [cell for cell in load_suite(str(suite), plugins).cells if cell.config["variant"] == "optimised"]
    assert len(cells) == 2 and all(cell.optimisation == study_record("s") for cell in cells)


@pytest.mark.suite
def test_imagenet_paper_dry_runs_through_slurm_on_submitits_local_executor(imagenet_like, paper_params, tmp_path):
    out = tmp_path / "out"
    args = ["imagenet-paper", "--data", str(imagenet_like), "--out", str(out), "--params-dir", str(paper_params),
            *PAPER_DRY_RUN, "--executor", "slurm", "--cluster", "local", "--array-size", "2", "--time-limit", "20",
            "--only", "resnet18/* seed 0"]  # the executor path: the cheapest model
    done = _suite_run(*args, env={"PXP_BENCH_LOAD_PLUGINS": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "7 cells finished now, 0 before, 0 failed, of 7" in done.stdout
    assert len(list(out.glob("*.json"))) == 7 and list((out / "slurm").iterdir())  # submitit's job folders
    again = _suite_run(*args, env={"PXP_BENCH_LOAD_PLUGINS": ""})  # resumes across submissions
    assert "0 cells finished now, 7 before" in again.stdout

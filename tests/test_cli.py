"""The command line through Typer's CliRunner: the happy path and every bad input (exit 2, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from helpers import as_at_a_terminal
from pxp_bench.cli import app
from pxp_bench.models.zoo import packaged_checkpoint

runner = CliRunner()
SCRIPT = [sys.executable, "-c", "from pxp_bench.cli import main; main()"]  # the console script


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_run_prints_the_curve_and_writes_one_json_result(tmp_path):
    result = invoke("run", "--method", "taylor", "--rates", "0,0.2,0.4", "--out", str(tmp_path), "--classes", "5")
    assert result.exit_code == 0, result.output
    assert "A_PR" in result.output and "Top-PR" in result.output and "0.40" in result.output
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1
    record = json.loads(written[0].read_text())
    assert record["method"] == "taylor" and record["rates"] == [0.0, 0.2, 0.4] and len(record["classes"]) == 5


def test_defaults_pick_lrp_filters_digits_and_params(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"normalize": "layer"}))
    result = invoke("run", "--rates", "0,0.5", "--out", str(tmp_path), "--params", str(params),
                    "--weights", str(packaged_checkpoint("digits-vgg")))
    assert result.exit_code == 0, result.output
    record = json.loads(next(tmp_path.glob("digits-vgg*.json")).read_text())
    assert (record["method"], record["components"], record["dataset"]) == ("lrp", "filters", "digits")
    assert record["variant"] == "custom" and record["params"]["normalize"] == "layer"
    assert record["weights"].startswith("file:")


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("pxp-bench 0.")


def test_list_with_wildcards():
    result = invoke("list", "models", "digits-*")
    assert result.exit_code == 0 and "digits-vgg" in result.output and "digits-resnet" in result.output
    methods = invoke("list", "methods", "t*")
    assert "taylor" in methods.output and "magnitude" not in methods.output
    assert "aggregation" in methods.output
    assert "digits" in invoke("list", "datasets").output


def test_plugins_json():
    result = invoke("plugins", "--json")
    assert result.exit_code == 0
    plugins = json.loads(result.output)
    assert {p["name"] for p in plugins} == {"pxp_bench.attribution.builtin", "pxp_bench.attribution.torch_pruning_builtin",
                                           "pxp_bench.attribution.captum_builtin", "pxp_bench.models.builtin",
                                           "pxp_bench.data.builtin", "pxp_bench.optimize.builtin",
                                           "pxp_bench.suites.builtin", "pxp_bench.tasks.builtin", "pxp_bench.lm.builtin"}
    assert all(p["distribution"] == "pxp-bench" and p["version"] and p["status"] == "loaded" for p in plugins)
    assert "plugins" in invoke("plugins").output


@pytest.mark.parametrize("args, message", [
    (["run", "--model", "digits-vg"], "unknown model 'digits-vg'. Did you mean 'digits-vgg'"),
    (["run", "--method", "tayler"], "Did you mean 'taylor'"),
    (["run", "--dataset", "digit"], "unknown dataset 'digit'"),
    (["run", "--components", "filter"], "unknown components 'filter'"),
    (["run", "--rates", "0,x"], "'x' is not a number"),
    (["run", "--rates", "0:1"], "start:stop:step"),
    (["run", "--rates", "0,1.2"], "must lie in [0, 1]"),
    (["run", "--classes", "11"], "--classes 11 is out of range"),
    (["run", "--classes", "1"], "--classes must be at least 2 (with one class every metric is trivially 1.0)"),
    (["run", "--classes", "three"], "--classes expects a number or 'all'"),
    (["run", "--ref-per-class", "1000"], "fewer than --ref-per-class 1000"),
    (["run", "--param", "foo=1"], "unknown parameter 'foo'"),
    (["run", "--method", "taylor", "--param", "aggregation=max"], "bad value 'max'"),
    (["run", "--param", "novalue"], "key=value"),
    (["run", "--params", "/no/such/params.json"], "does not exist"),
    (["run", "--method", "taylor", "--preset", "yeom"], "no preset 'yeom'"),
    (["run", "--weights", "/no/such/weights.pt"], "does not exist"),
    (["run", "--device", "gpu"], "unknown device 'gpu'"),
    (["run", "--data", "/tmp"], "takes no --data"),
    (["run", "--model", "digits-resnet", "--components", "neurons"], "no hidden fully connected"),
    (["run", "--param", "attention=cp"], "exists only for transformer and lm models"),
    (["run", "--rates", "0"], "no rate above 0"),
    (["run", "--rates", "0:1:1e-9"], "at most 1,000 are allowed"),
    (["run", "--rates", "0:1:0.001"], "999 rates above 0, but the model has only 160 components"),
    (["list", "model"], "Did you mean 'models'"),
    (["zoo", "train", "resnet50", "--out", "/tmp/zoo-out"], "not a zoo model"),
])
def test_bad_input_exits_2_with_one_clear_line(args, message, tmp_path):
    result = invoke(*args, *(["--out", str(tmp_path)] if args[0] == "run" else []))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output and not list(tmp_path.glob("*.json"))


def test_fewer_than_5_latency_repeats_are_refused_in_one_line(tmp_path):
    result = invoke("run", "--latency-repeats", "3", "--out", str(tmp_path))
    assert result.exit_code == 2 and not list(tmp_path.glob("*.json"))
    assert result.output.strip().splitlines() == [
        "Error: --latency-repeats must be at least 5 (timed passes for a median and an interquartile range) "
        "or 0 to skip timing, got 3."]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda(tmp_path):
    result = invoke("run", "--device", "cuda", "--out", str(tmp_path))
    assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_unwritable_out_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = invoke("run", "--out", str(blocker / "results"))
    assert result.exit_code == 2 and "not writable" in result.output and "scoring" not in result.output


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    result = invoke("run", "--weights", str(bad), "--out", str(tmp_path))
    assert result.exit_code == 2 and "corrupt" in result.output


def test_zoo_train_writes_checkpoint_and_manifest(tmp_path):
    result = invoke("zoo", "train", "digits-vgg", "--out", str(tmp_path), "--epochs", "1")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "digits-vgg.json").read_text())
    assert manifest["command"] == f"pxp-bench zoo train digits-vgg --out {tmp_path} --epochs 1 --seed 0"


def _console_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), COLUMNS="200", **env)
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, timeout=60, env=environment)


@pytest.mark.e2e
def test_console_script_help_and_plugin_errors(install_plugin):
    """The installed entry point: a broken plugin leaves --help, --version and `plugins` working
    (listed there as failed), and commands that need the registries work, saying so in one line."""
    install_plugin("pxp-broken", "raise ImportError('needs foo')\n")
    helped = _console_script("--help")
    assert helped.returncode == 0 and "run" in helped.stdout, helped.stderr
    assert _console_script("--version").stdout.startswith("pxp-bench 0.")
    table = _console_script("plugins")
    assert table.returncode == 0 and "failed: ImportError: needs foo" in table.stdout, table.stderr
    listed = json.loads(_console_script("plugins", "--json").stdout)
    assert {p["name"]: p["status"] for p in listed}["pxp-broken"] == "failed: ImportError: needs foo"
    listed = _console_script("list", "methods")
    assert listed.returncode == 0 and "taylor" in listed.stdout and len(listed.stderr.splitlines()) == 1
    assert listed.stderr.startswith("Warning: plugin 'pxp-broken' from pxp-broken 1.2.3 failed and is not loaded")
    assert "Fix or uninstall pxp-broken" in listed.stderr and "Traceback" not in listed.stderr


@pytest.mark.e2e
def test_console_script_prints_a_warning_as_one_line():
    done = _console_script("list", "datasets", PXP_BENCH_LOAD_PLUGINS="pxp-missing")
    assert done.returncode == 0 and "digits" in done.stdout
    assert done.stderr.splitlines() == [
        "Warning: PXP_BENCH_LOAD_PLUGINS names 'pxp-missing', but no installed distribution of that name "
        "provides a pxp-bench plugin. Install it, or correct or remove the name in PXP_BENCH_LOAD_PLUGINS."]


def test_a_refused_run_or_export_leaves_no_output_folder_it_made(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")  # refused once the run loads it: after the output folders were made
    result = invoke("run", "--weights", str(bad), "--out", str(tmp_path / "new" / "results"))
    assert result.exit_code == 2 and str(bad) in result.output, result.output
    exported = invoke("export", "--weights", str(bad), "--out", str(tmp_path / "out"), "--to",
                      str(tmp_path / "models" / "slim.pt2"))
    assert exported.exit_code == 2 and str(bad) in exported.output, exported.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]


SLOW_METHODS = '''
import os
import time
from pathlib import Path

import pxp_bench


def _ready():
    Path(os.environ["PXP_TEST_READY"]).write_text("scoring")


def slow_scores(model, components, reference, context, **params):
    _ready()
    time.sleep(3600)


def stubborn_scores(model, components, reference, context, **params):
    _ready()
    while True:  # swallows Ctrl-C, as code stuck where the interrupt cannot reach would
        try:
            time.sleep(3600)
        except KeyboardInterrupt:
            pass


@pxp_bench.hookimpl
def register_methods(register):
    register(pxp_bench.MethodSpec(name="slow", score=slow_scores, summary="scores for an hour"))
    register(pxp_bench.MethodSpec(name="stubborn", score=stubborn_scores, summary="never stops scoring"))
'''


@pytest.mark.e2e
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Ctrl-C as a terminal sends it (SIGINT)")
@pytest.mark.parametrize("method", ["slow", "stubborn"])
def test_ctrl_c_stops_a_run_in_one_line_and_leaves_no_empty_output_folder(install_plugin, tmp_path, method):
    import signal
    import time

    install_plugin("pxp-slow-methods", SLOW_METHODS)
    ready, out = tmp_path / "ready", tmp_path / "new" / "results"
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), COLUMNS="200", PXP_TEST_READY=str(ready))
    command = subprocess.Popen([*SCRIPT, "run", "--method", method, "--rates", "0,0.5", "--out", str(out)],
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=as_at_a_terminal)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():  # scoring has begun: the run is past its checks and made --out
            assert command.poll() is None and time.monotonic() < deadline, command.communicate()
            time.sleep(0.1)
        command.send_signal(signal.SIGINT)
        # the stubborn method never lets go: the command's deadline ends it
        _, stderr = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    assert command.returncode == 130, stderr
    said = [line for line in stderr.splitlines() if line.strip() and not line.startswith("scoring ")]  # its bar
    assert said == ["Interrupted: no result was written; rerun the same command."], stderr
    assert not (tmp_path / "new").exists()

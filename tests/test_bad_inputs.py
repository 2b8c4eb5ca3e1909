"""Bad inputs outside `optimize` (issue 19): each is one line on stderr, exit 2, nothing partial written,
and checked before the work where it can be."""

from __future__ import annotations

import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import TINY_SUITE as TINY
from pxp_bench.cli import app
from pxp_bench.cli.common import parse_seeds
from pxp_bench.errors import ConfigError
from pxp_bench.rates import parse_rates

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = [sys.executable, "-c", "from pxp_bench.cli import main; main()"]
QUICK = ["--method", "magnitude", "--classes", "2", "--rates", "0,0.5", "--latency-repeats", "0"]
RECORDS = sorted((ROOT / "leaderboard" / "results").glob("digits-vgg_filters_magnitude-default_*.json"))


def invoke(*args: str):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def one_line_error(done, *needles: str) -> None:
    """Exit 2, no traceback, and every needle in the output."""
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and isinstance(done.exception, (SystemExit, type(None))), done.exception
    for needle in needles:
        assert needle in " ".join(done.output.split()), (needle, done.output)


# 1. --weights that are not a checkpoint


@pytest.mark.parametrize("name, text", [("w.pt", "hello weights"), ("hi.pth", "hi"), ("q", "q"),
                                         ("notes.txt", "hello weights")])
def test_a_text_file_as_weights_is_not_a_checkpoint(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    done = invoke("run", *QUICK, "--weights", tmp_path / name, "--out", tmp_path / "out")
    one_line_error(done, "is not a checkpoint", ".safetensors", "state dict")
    assert not list((tmp_path / "out").glob("*.json"))


def test_a_json_file_as_weights_is_not_called_a_manifest(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps({"a": 1}))
    done = invoke("run", *QUICK, "--weights", tmp_path / "params.json", "--out", tmp_path / "out")
    one_line_error(done, "is a JSON file, not a checkpoint")
    assert "sha256" not in done.output


def test_weights_none_on_a_zoo_model_says_where_none_applies(tmp_path):
    done = invoke("run", *QUICK, "--weights", "none", "--out", tmp_path)
    one_line_error(done, "--weights none", "torchvision and timm", "zoo train digits-vgg")


# 2. export --to and zoo train --out: checked first, never replacing silently, never leaving partial files


def test_export_to_an_existing_folder_is_refused_before_the_run(tmp_path):
    (tmp_path / "model.pt2").mkdir()
    done = invoke("export", *QUICK, "--out", tmp_path / "out", "--to", tmp_path / "model.pt2")
    one_line_error(done, "--to", "is a folder")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def test_export_under_a_file_names_to_not_out(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = invoke("export", *QUICK, "--out", tmp_path / "out", "--to", tmp_path / "file" / "m.pt2")
    one_line_error(done, "--to")
    assert "--out" not in done.output


@pytest.mark.parametrize("existing", ["m.pt2", "m.json"])
def test_export_refuses_to_replace_a_file_unless_forced(tmp_path, existing):
    (tmp_path / existing).write_text("keep me")
    done = invoke("export", *QUICK, "--out", tmp_path / "out", "--to", tmp_path / "m.pt2")
    one_line_error(done, str(tmp_path / existing), "--force")
    assert (tmp_path / existing).read_text() == "keep me"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))


def _limit_file_size() -> None:
    """A real write failure without root: files of this process may not grow past 128 kB (a slimmed
    digits-vgg export is about 500 kB; the result record and sidecar are a few kB)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then write() fails with EFBIG, as with ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))


@pytest.mark.e2e
def test_an_export_that_cannot_be_written_is_one_line_and_leaves_no_partial_file(tmp_path):
    target, rescue = tmp_path / "to" / "m.pt2", tmp_path / "rescue"
    done = subprocess.run([*SCRIPT, "export", *QUICK, "--out", str(tmp_path / "out"), "--to", str(target)],
                          capture_output=True, text=True, timeout=600, preexec_fn=_limit_file_size,
                          env={**os.environ, "COLUMNS": "300", "PXP_BENCH_RESCUE_DIR": str(rescue)})
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "could not write the export" in errors[0] and "rescue folder" in errors[0], errors[0]
    assert not target.parent.exists()  # no 0-byte .pt2, no temporary, and the folder made for it removed again
    assert not rescue.exists() or not [p for p in rescue.iterdir() if p.suffix == ".pt2"]
    assert len(list((tmp_path / "out").glob("*.json"))) == 1  # the finished result is kept


def test_zoo_train_refuses_to_replace_a_checkpoint_unless_forced(tmp_path):
    (tmp_path / "digits-vgg.safetensors").write_text("keep me")
    done = invoke("zoo", "train", "digits-vgg", "--out", tmp_path, "--epochs", "1")
    one_line_error(done, str(tmp_path / "digits-vgg.safetensors"), "--force")
    assert (tmp_path / "digits-vgg.safetensors").read_text() == "keep me"


# 3. seeds: one range, no empty items


@pytest.mark.parametrize("text", ["99999999999999999999", "4294967296", "0,,1", "0,1,"])
def test_bad_seed_lists_are_one_line(text):
    with pytest.raises(ConfigError) as caught:
        parse_seeds(text)
    assert "\n" not in str(caught.value) and "--seeds" in str(caught.value)
    assert parse_seeds("0,4294967295") == (0, 4294967295)  # the range's end is a seed


@pytest.mark.parametrize("text", ["0,,0.5", ",0.5", "0.5,"])
def test_empty_rates_are_refused(text):
    with pytest.raises(ConfigError, match="empty"):
        parse_rates(text)


@pytest.mark.parametrize("seed", ["4294967296", "99999999999999999999"])
def test_run_refuses_a_seed_out_of_range_before_the_work(tmp_path, seed):
    one_line_error(invoke("run", *QUICK, "--seed", seed, "--out", tmp_path), "--seed", "4294967295")


def test_zoo_train_refuses_a_negative_seed(tmp_path):
    one_line_error(invoke("zoo", "train", "digits-vgg", "--out", tmp_path, "--seed", "-1"), "--seed", "4294967295")
    assert not list(tmp_path.iterdir())


def test_a_suite_refuses_seeds_out_of_range(tmp_path):
    done = invoke("suite", "run", "digits", "--seeds", "4294967296", "--out", tmp_path / "out")
    one_line_error(done, "--seeds", "4294967295")


# 4. leaderboard over a NaN record, plot formats


def test_a_record_with_a_nan_metric_is_kept_out_with_its_reason(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    good, bad = RECORDS[:2]
    shutil.copy(good, folder / good.name)
    record = json.loads(bad.read_text())
    record["metrics"]["a_pr"] = math.nan
    (folder / bad.name).write_text(json.dumps(record))
    done = invoke("leaderboard", folder, "--out", tmp_path / "board")
    assert done.exit_code == 0, done.output
    assert f"kept out {folder / bad.name}" in " ".join(done.output.split()) and "metrics.a_pr" in done.output
    rows = [line for line in (tmp_path / "board" / "README.md").read_text().splitlines() if line.startswith("|")]
    assert rows and not [row for row in rows if "nan" in row.lower()]


@pytest.mark.parametrize("name", ["x.jpg", "x.txt", "x"])
def test_plot_writes_only_png_and_says_so_first(tmp_path, name):
    done = invoke("plot", RECORDS[0], "--out", tmp_path / name)
    one_line_error(done, "--out", ".png")
    assert not (tmp_path / name).exists()


# 5. unwritable --out, plugins disabled by the environment


def test_out_that_is_not_a_writable_folder_says_so(tmp_path):
    done = invoke("run", *QUICK, "--out", "/proc/self")
    one_line_error(done, "/proc/self", "not a writable folder")


def test_an_unknown_name_while_plugins_are_disabled_names_the_variable(tmp_path):
    assert os.environ["PXP_BENCH_LOAD_PLUGINS"] == ""
    done = invoke("run", "--method", "wanda", "--out", tmp_path)
    one_line_error(done, "unknown method 'wanda'", "PXP_BENCH_LOAD_PLUGINS")


# 6. plugins lists counts, not every timm model


def test_plugins_groups_long_registrations_unless_all():
    short = invoke("plugins")
    assert short.exit_code == 0, short.output
    cells = re.sub(r"[\s│]+", "", short.output)  # the table's cells, unwrapped
    assert len(short.output.splitlines()) < 80 and re.search(r"models:[\d,]+\(digits-vgg,.*…;see`pxp-benchlistmodels`", cells)
    everything = invoke("plugins", "--all")
    assert everything.exit_code == 0 and len(everything.output.splitlines()) > 10 * len(short.output.splitlines())
    listed = json.loads(invoke("plugins", "--json").output)
    models = next(p for p in listed if p["name"] == "pxp_bench.models.builtin")["registers"]["models"]
    assert len(models) > 500  # --json stays complete


# 7. zoo --help


def test_zoo_help_names_only_commands_that_exist():
    done = invoke("zoo", "--help")
    assert done.exit_code == 0 and "inspect" not in done.output and "train" in done.output


# 8. a refused suite run leaves no folder behind




def test_a_refused_slurm_run_leaves_no_empty_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # no SLURM commands on it
    (tmp_path / "tiny.toml").write_text(textwrap.dedent(TINY))
    out = tmp_path / "new" / "out"
    done = invoke("suite", "run", tmp_path / "tiny.toml", "--out", out, "--executor", "slurm")
    one_line_error(done, "no SLURM here")
    assert not (tmp_path / "new").exists()


# 9. two suite runs into one folder run each cell once


@pytest.mark.suite
def test_two_concurrent_suite_runs_run_each_cell_once(tmp_path):
    suite, out = tmp_path / "tiny.toml", tmp_path / "out"
    suite.write_text(textwrap.dedent(TINY))
    command = [*SCRIPT, "suite", "run", str(suite), "--out", str(out), "--jobs", "1"]
    env = {**os.environ, "COLUMNS": "300", "PXP_BENCH_LOAD_PLUGINS": ""}
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    results = sorted(p.name for p in out.glob("*.json"))
    assert len(results) == 4, results  # 2 methods x 2 seeds, each once
    records = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "done" for r in records)
    assert sorted(r["result"] for r in records) == results
    finished_now = [int(stdout.split(" cells finished now")[0].rsplit(" ", 1)[-1]) for stdout, _ in outputs]
    assert sum(finished_now) == 4, outputs
    logs = [p.read_text() for p in (out / "cells").glob("*.log")]
    assert all(log.count("done: ") == 1 for log in logs), logs

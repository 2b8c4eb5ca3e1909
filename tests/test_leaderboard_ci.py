"""The committed leaderboard is exactly what its committed results generate, and the make target and CI
workflow that publish it work."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pxp_bench.cli import app
from pxp_bench.leaderboard import README_END, README_START, build_leaderboard

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / "leaderboard"
EXERCISED_TARGETS = {"leaderboard-fresh", "verify-added"}
"""The make targets CI's leaderboard workflow may run: each is run by a test here."""


def _readme_section(path: Path) -> str:
    text = path.read_text()
    return text[text.index(README_START):text.index(README_END)]


def test_the_committed_leaderboard_regenerates_byte_for_byte(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    report = build_leaderboard([BOARD / "results"], tmp_path / "leaderboard", readme=readme)
    assert not report.kept_out and report.tables == 23  # 7 of digits-full and lm, 16 of digits-beyond (3 settings
    # x 6 conditions, the ViT without BN recalibration and layer-wise)
    assert report.markdown.read_bytes() == (BOARD / "README.md").read_bytes()
    committed = sorted(path.name for path in (BOARD / "plots").glob("*.png"))
    assert sorted(path.name for path in report.plots) == committed
    assert all(path.read_bytes() == (BOARD / "plots" / path.name).read_bytes() for path in report.plots)
    assert _readme_section(readme) == _readme_section(ROOT / "README.md")  # the README's headline table too


def test_the_workflow_runs_only_make_targets_the_tests_exercise():
    workflow = yaml.safe_load((ROOT / ".github/workflows/leaderboard.yml").read_text())
    steps = workflow["jobs"]["leaderboard"]["steps"]
    steps += workflow["jobs"]["verify"]["steps"]
    commands = [shlex.split(step["run"]) for step in steps if "run" in step]
    targets = [{word for word in command[1:] if "=" not in word} for command in commands]  # VAR=value: settings
    assert commands and all(command[0] == "make" for command in commands)
    assert set().union(*targets) == EXERCISED_TARGETS
    published = next(step for step in steps if "git-auto-commit" in step.get("uses", ""))
    assert published["with"]["file_pattern"] == "leaderboard/ README.md"


@pytest.mark.suite
def test_make_leaderboard_fresh_reruns_the_suite_and_regenerates(tmp_path):
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "README.md", readme)
    board = tmp_path / "board"
    (board / "results").mkdir(parents=True)
    (board / "results" / "stale.json").write_text("{}")  # a fresh run starts from nothing
    done = subprocess.run(
        ["make", "--no-print-directory", "leaderboard-fresh", f"LEADERBOARD={board}", f"README_FILE={readme}",
         "JOBS=2", "SUITES=digits-full",  # the lm suite's cells match no --only below
         "SUITE_ARGS=--only 'digits-vgg/filters random:* seed 0' --only 'digits-vgg/filters magnitude:default seed 0'"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "PXP_BENCH_LOAD_PLUGINS": "pxp-bench-example"})  # the suite runs the example's wanda
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (board / "results" / "stale.json").exists()
    assert len(list((board / "results").glob("*.json"))) == 2
    markdown = (board / "README.md").read_text()
    assert "## digits-vgg · filters · digits" in markdown and "| magnitude | default |" in markdown
    assert sorted(path.name for path in (board / "plots").glob("*.png")) == [  # its curves and its layer profile
        "digits_digits-vgg_filters.png", "digits_digits-vgg_filters_profile.png"]
    section = _readme_section(readme)
    assert "random (default)" in section and section != _readme_section(ROOT / "README.md")


def test_compare_works_on_two_committed_records():
    first, second = (next((BOARD / "results").glob(f"digits-vgg_filters_{kind}_digits_seed0_*.json"))
                     for kind in ("lrp-optimised", "magnitude-default"))
    done = CliRunner().invoke(app, ["compare", str(first), str(second), "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert found["seeds"] == [0] and found["samples"] == 360
    difference = found["a_pr_difference"]
    assert difference["low"] <= difference["value"] <= difference["high"]
    assert found["verdict"].split(":")[0] in ("the first is better", "the second is better", "no difference shown")


@pytest.mark.e2e
def test_make_verify_added_reruns_only_the_records_a_change_adds_and_fails_on_a_forged_one(tmp_path):
    results = tmp_path / "repo" / "board" / "results"
    results.mkdir(parents=True)
    done = CliRunner().invoke(app, ["run", "--method", "magnitude", "--classes", "2", "--rates", "0,0.5",
                                    "--latency-repeats", "0", "--evaluate", "masked", "--out", str(results)])
    assert done.exit_code == 0, done.output
    (record,) = results.glob("*.json")
    git = ["git", "-C", str(results), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)

    def verify_added() -> subprocess.CompletedProcess:
        return subprocess.run(["make", "--no-print-directory", "verify-added", f"LEADERBOARD={results.parent}",
                               "BASE=HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=600)

    nothing = verify_added()
    assert nothing.returncode == 0 and "no result records added" in nothing.stdout, nothing.stdout + nothing.stderr
    forged = json.loads(record.read_text())
    forged["metrics"]["a_pr"] = 0.99
    (results / "added-forged.json").write_text(json.dumps(forged))
    shutil.copy(record, results / "added-copy.json")
    subprocess.run([*git, "add", "."], check=True)
    checked = verify_added()
    assert checked.returncode != 0 and "1 reproduced, 1 differ" in checked.stdout, checked.stdout + checked.stderr
    assert record.name not in checked.stdout  # only what the change adds is rerun

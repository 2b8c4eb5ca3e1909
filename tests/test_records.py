"""Records are believed only where they agree with themselves (`pxp_bench.records`), and `pxp-bench verify`
reruns them bit for bit: forged records are kept out of the leaderboard and compare and fail verify."""

from __future__ import annotations

import base64
import json
import shutil
import time

import pytest
from typer.testing import CliRunner

from helpers import leaderboard_result
from pxp_bench.cli import app
from pxp_bench.leaderboard import build_leaderboard
from pxp_bench.records import load_records
from pxp_bench.results import write_result

RUN = ["--model", "digits-vgg", "--method", "taylor", "--classes", "3", "--rates", "0,0.3,0.6", "--latency-repeats", "0"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real run's record, written by `pxp-bench run`."""
    out = tmp_path_factory.mktemp("real")
    done = CliRunner().invoke(app, ["run", *RUN, "--out", str(out)])
    assert done.exit_code == 0, done.output
    (path,) = out.glob("*.json")
    return path


def _copy(record: dict) -> dict:
    return json.loads(json.dumps(record))


def _flip_one_outcome(record: dict) -> dict:
    forged = _copy(record)
    bits = bytearray(base64.b64decode(forged["outcomes"]["correct"][1]))
    bits[0] ^= 0x80
    forged["outcomes"]["correct"][1] = base64.b64encode(bytes(bits)).decode()
    return forged


def _forgeries(record: dict) -> dict[str, dict]:
    metric, point, seed = _copy(record), _copy(record), _copy(record)
    metric["metrics"]["a_pr"] = 0.99
    point["curve"][1]["correct"] += 3
    point["curve"][1]["accuracy"] = point["curve"][1]["correct"] / point["samples"]["evaluation"]
    seed["seed"] = 1
    return {"metric": metric, "point": point, "bit": _flip_one_outcome(record), "seed": seed}


@pytest.fixture(scope="module")
def forged(real, tmp_path_factory):
    folder = tmp_path_factory.mktemp("forged")
    for name, record in _forgeries(json.loads(real.read_text())).items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    return folder


def test_forged_records_are_kept_out_of_the_leaderboard_each_with_the_field_that_disagrees(real, forged, tmp_path):
    shutil.copy(real, forged / real.name)
    report = build_leaderboard([forged], tmp_path / "board")
    reasons = {entry.name.split("/")[1]: entry.reason for entry in report.kept_out}
    assert sorted(reasons) == ["bit.json", "metric.json", "point.json", "seed.json"] and report.rows == 1
    assert reasons["metric.json"].startswith("metrics.a_pr is 0.99 but its curve and outcomes give 0.")
    assert reasons["point.json"].startswith("curve[1] (rate 0.3).correct is ")
    assert reasons["bit.json"].startswith("curve[1] (rate 0.3).correct is ") and "outcomes give" in reasons["bit.json"]
    assert reasons["seed.json"].startswith("samples.") and "seed 1 and its options give" in reasons["seed.json"]
    assert all("edited" in reason for reason in reasons.values())
    markdown = report.markdown.read_text()
    assert "- `" + forged.name + "/metric.json`: metrics.a_pr is 0.99" in markdown and "0.99" not in markdown.split("## Kept out")[0]
    (forged / real.name).unlink()


def test_forged_records_are_refused_by_compare_in_one_line(real, forged):
    runner = CliRunner()
    for name, field in (("metric", "metrics.a_pr"), ("point", "curve[1]"), ("bit", "curve[1]"), ("seed", "seed 1")):
        done = runner.invoke(app, ["compare", str(forged / f"{name}.json"), str(real)])
        assert done.exit_code == 2 and field in done.output and "Traceback" not in done.output, done.output
        assert len(done.output.strip().splitlines()) == 1


def test_verify_reproduces_a_real_record_and_fails_every_forgery(real, forged):
    runner = CliRunner()
    done = runner.invoke(app, ["verify", str(real), "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert found["reproduced"] == 1 and found["records"][0]["status"] == "reproduced"
    done = runner.invoke(app, ["verify", str(forged), "--json"])
    assert done.exit_code == 1, done.output
    verdicts = {record["file"].rsplit("/", 1)[1]: record for record in json.loads(done.output)["records"]}
    assert {record["status"] for record in verdicts.values()} == {"differs"}
    assert verdicts["metric.json"]["detail"].startswith("metrics.a_pr: recorded 0.99, reproduced 0.")
    assert verdicts["point.json"]["detail"].startswith("curve[1].accuracy (rate 0.3)")
    assert verdicts["bit.json"]["detail"].startswith("outcomes.correct[1] (rate 0.3)")
    assert verdicts["seed.json"]["detail"].startswith("curve[")  # another seed draws other samples and classes


def test_verify_samples_with_a_seed_and_says_which_records_cannot_be_rerun(real, tmp_path):
    old = leaderboard_result("lrp", 0)  # no options recorded: an older pxp-bench's
    write_result(old, tmp_path)
    shutil.copy(real, tmp_path / real.name)
    runner = CliRunner()
    done = runner.invoke(app, ["verify", str(tmp_path), "--sample", "1", "--seed", "3", "--json"])
    assert done.exit_code == 0 and json.loads(done.output)["checked"] == 1 and json.loads(done.output)["of"] == 2
    done = runner.invoke(app, ["verify", str(tmp_path), "--json"])
    found = json.loads(done.output)
    assert done.exit_code == 0 and (found["reproduced"], found["cannot_rerun"]) == (1, 1)
    cannot = next(record for record in found["records"] if record["status"] == "cannot rerun")
    assert "does not record its run options" in cannot["detail"]
    assert runner.invoke(app, ["verify", str(tmp_path), "--strict"]).exit_code == 1
    shown = runner.invoke(app, ["verify", str(tmp_path)])
    assert "1 reproduced, 0 differ, 1 cannot be rerun here" in shown.output
    for arguments, message in ((["--sample", "0"], "--sample must be at least 1"), (["--seed", "-1"], "--seed must be 0")):
        refused = runner.invoke(app, ["verify", str(tmp_path), *arguments])
        assert refused.exit_code == 2 and message in refused.output and "Traceback" not in refused.output


def test_a_record_claiming_other_weights_or_a_rate_that_pruned_nothing_is_kept_out(real, tmp_path):
    record = json.loads(real.read_text())
    other = _copy(record)
    other["weights"] = "packaged:" + "0" * 64
    (tmp_path / "weights.json").write_text(json.dumps(other))
    record_of_nothing = leaderboard_result("lrp", 0).to_dict()
    record_of_nothing["curve"][1]["pruned"] = 0
    (tmp_path / "nothing.json").write_text(json.dumps(record_of_nothing))
    reasons = {entry.path.name: entry.reason for entry in load_records([tmp_path]).kept_out}
    assert reasons["weights.json"].startswith("weights is 'packaged:000")
    assert reasons["nothing.json"].startswith("curve[1] (rate 0.05) pruned no component")


def test_a_huge_sample_count_is_refused_without_allocating(tmp_path):
    record = leaderboard_result("lrp", 0).to_dict()
    record["outcomes"]["samples"] = 10**11
    record["samples"]["evaluation"] = 10**11
    (tmp_path / "huge.json").write_text(json.dumps(record))
    clock = time.perf_counter()
    (entry,) = load_records([tmp_path]).kept_out
    assert "outcomes are damaged" in entry.reason and time.perf_counter() - clock < 5
    refused = CliRunner().invoke(app, ["leaderboard", str(tmp_path), "--out", str(tmp_path / "board")])
    assert refused.exit_code == 2 and "no result to tabulate" in refused.output
    assert not (tmp_path / "board").exists()  # nothing partial: no empty plots/ folder


@pytest.mark.parametrize("edit", [
    lambda r: r.update(seed=[0]), lambda r: r.update(rates=None), lambda r: r.update(rates="0,0.5"),
    lambda r: r.update(created=None), lambda r: r.update(method=None), lambda r: r.update(protocol_version=1),
])
def test_compare_reads_through_the_loader_one_line_for_each_malformed_record(tmp_path, edit):
    good = write_result(leaderboard_result("random", 0, keeps=0.2), tmp_path / "b")
    record = leaderboard_result("lrp", 0).to_dict()
    edit(record)
    (tmp_path / "a.json").write_text(json.dumps(record))
    done = CliRunner().invoke(app, ["compare", str(tmp_path / "a.json"), str(good)])
    assert done.exit_code == 2 and "Traceback" not in done.output and len(done.output.strip().splitlines()) == 1


def test_compare_skips_the_files_optimize_writes_beside_results(tmp_path):
    for seed in range(2):
        write_result(leaderboard_result("lrp", seed, keeps=0.6), tmp_path / "a")
        write_result(leaderboard_result("random", seed, keeps=0.2), tmp_path / "b")
    (tmp_path / "a" / "study.best.json").write_text(json.dumps({"params": {}}))
    (tmp_path / "a" / "study.provenance.json").write_text(json.dumps({"study": "x"}))
    done = CliRunner().invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert done.exit_code == 0 and json.loads(done.output)["seeds"] == [0, 1], done.output


def test_variants_with_the_same_parameters_are_one_row_naming_both(tmp_path):
    for seed in range(2):
        write_result(leaderboard_result("lrp", seed, variant="default"), tmp_path)
        write_result(leaderboard_result("lrp", seed, variant="epsilon"), tmp_path)
        write_result(leaderboard_result("lrp", seed, variant="yeom", params={"composite": "zplus"}, keeps=0.3), tmp_path)
    report = build_leaderboard([tmp_path], tmp_path / "out")
    text = report.markdown.read_text()
    assert report.rows == 2 and "| lrp | default = epsilon |" in text and "| lrp | yeom |" in text

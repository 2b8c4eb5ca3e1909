"""Curve plots: `pxp-bench plot` overlays result files, `run --plot` draws a run's curve (and its layer
profile) beside its JSON."""

from __future__ import annotations

import json

import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from helpers import QUICK_RATES, leaderboard_result
from pxp_bench.cli import app
from pxp_bench.leaderboard import curves_png, profile_png, table_png
from pxp_bench.leaderboard.plots import DPI, FIGSIZE
from pxp_bench.leaderboard.tables import group_tables
from pxp_bench.results import write_result

runner = CliRunner()
PIXELS = (round(FIGSIZE[1] * DPI), round(FIGSIZE[0] * DPI))


def test_the_plot_size_is_fixed():
    assert PIXELS == (450, 800)


def test_plot_overlays_result_files_into_a_png_that_reads_back_at_the_fixed_size(tmp_path):
    first = write_result(leaderboard_result("lrp", 0, keeps=0.6), tmp_path)
    second = write_result(leaderboard_result("random", 1, keeps=0.1, rates=QUICK_RATES), tmp_path)
    out = tmp_path / "new" / "curve.png"
    result = runner.invoke(app, ["plot", str(first), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout
    image = imread(out)
    assert image.shape == (*PIXELS, 4)
    assert (image[..., :3] < 0.9).any(axis=2).mean() > 0.02  # lines, text and axes, not a blank canvas


def test_overlaid_curves_are_drawn_deterministically_and_each_one_shows():
    results = [leaderboard_result("lrp", 0).to_dict(), leaderboard_result("lrp", 0, keeps=0.1).to_dict()]
    both = curves_png(results, ["a.json", "b.json"])
    assert both == curves_png(results, ["a.json", "b.json"])
    assert both != curves_png(results[:1], ["a.json"])


def test_a_table_plot_shades_the_bootstrap_interval_of_rows_with_outcomes():
    with_outcomes = group_tables([leaderboard_result("lrp", 0, keeps=0.3).to_dict()])[0]
    without = group_tables([leaderboard_result("lrp", 0, keeps=0.3, outcomes=False).to_dict()])[0]
    assert table_png(with_outcomes) != table_png(without)  # one seed: a band from the samples, no SEM


def test_rows_without_outcomes_shade_a_sem_band_exactly_where_seeds_differ():
    seeds = [leaderboard_result("lrp", seed, keeps=0.3, outcomes=False).to_dict() for seed in range(3)]
    mean_only = {**seeds[0], "curve": [{**point, "accuracy": sum(run["curve"][i]["accuracy"] for run in seeds) / 3}
                                       for i, point in enumerate(seeds[0]["curve"])]}
    assert mean_only["curve"] != seeds[0]["curve"]
    twice = [seeds[0], {**seeds[0], "seed": 1}]
    [varied], [mean], [one], [same] = (group_tables(runs) for runs in (seeds, [mean_only], seeds[:1], twice))
    assert table_png(varied) != table_png(mean)  # the same mean line, plus the band
    assert table_png(same) == table_png(one)  # equal seeds: a band of zero width draws nothing


@pytest.mark.parametrize("content, words", [
    ("not json", ["unreadable"]),
    (json.dumps({"schema_version": 1}), ["not a pxp-bench result"]),
])
def test_plot_refuses_a_file_that_is_not_a_result_in_one_line(tmp_path, content, words):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    _one_line_error(runner.invoke(app, ["plot", str(bad), "--out", str(tmp_path / "c.png")]), str(bad), *words)
    assert not (tmp_path / "c.png").exists()


def test_plot_errors_are_one_line(tmp_path):
    _one_line_error(runner.invoke(app, ["plot", str(tmp_path / "missing.json")]), "unreadable", "missing.json")
    broken = leaderboard_result("lrp", 0).to_dict()
    broken["curve"] = [{"rate": 0.0}]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    _one_line_error(runner.invoke(app, ["plot", str(tmp_path / "broken.json")]), "cannot plot", "curve")
    good = write_result(leaderboard_result("lrp", 0), tmp_path / "runs")
    (tmp_path / "a_file").write_text("")
    _one_line_error(runner.invoke(app, ["plot", str(good), "--out", str(tmp_path / "a_file" / "c.png")]),
                    "not writable", "--out")


def test_run_plot_writes_the_curve_and_the_layer_profile_beside_the_json(tmp_path):
    result = runner.invoke(app, ["run", "--model", "digits-vgg", "--method", "magnitude", "--classes", "3",
                                 "--rates", ",".join(map(str, QUICK_RATES)), "--latency-repeats", "0",
                                 "--out", str(tmp_path), "--plot"])
    assert result.exit_code == 0, result.output
    [written] = tmp_path.glob("*.json")
    assert sorted(path.name for path in tmp_path.iterdir()) == [written.name, f"{written.stem}.png",
                                                                f"{written.stem}.profile.png"]
    assert imread(tmp_path / f"{written.stem}.png").shape == (*PIXELS, 4)
    profile = tmp_path / f"{written.stem}.profile.png"
    assert f"layer profile written to {profile}" in " ".join(result.stdout.split())
    assert profile.read_bytes() == profile_png([json.loads(written.read_text())])  # the record's own layers
    assert imread(profile).shape[2] == 4


def _one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output and all(word in result.stderr for word in words), result.stderr

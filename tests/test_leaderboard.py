"""The leaderboard: means over seeds with intervals, bold only where intervals support it, what is merged
and what is kept out, exact regeneration, the README markers and the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import leaderboard_result as make_result
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.leaderboard import README_END, README_START, build_leaderboard, collect_results, update_readme
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.results import PROTOCOL_VERSION, SCHEMA_VERSION, write_result


def table_rows(markdown: str, title: str) -> list[dict[str, str]]:
    """The rows of the table under heading ``title``, as header -> cell."""
    lines = markdown.split(f"## {title}\n", 1)[1].strip().splitlines()
    table = []
    for line in lines:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip("|").split("|")])
    header, _, *rows = table
    return [dict(zip(header, row)) for row in rows]


def plain(cell: str) -> str:
    return cell.replace("**", "")


def mean_of(cell: str) -> str:
    """The mean of a cell ``0.512 [0.50, 0.52]``, without its interval and bold."""
    return plain(cell).split(" [")[0]


def test_means_over_seeds_equal_an_independent_computation_from_the_files(tmp_path):
    results = tmp_path / "results"
    for seed in range(3):
        write_result(make_result("lrp", seed, keeps=0.6, total=10.0 + seed), results)
        write_result(make_result("random", seed, keeps=0.2, total=4.0 + 3 * seed), results)
    write_result(make_result("taylor", 0, keeps=0.4), results)
    report = build_leaderboard([results], tmp_path / "out")
    rows = table_rows(report.markdown.read_text(), "digits-vgg · filters · digits")
    assert [(row["method"], row["variant"]) for row in rows] == [("lrp", "default"), ("taylor", "default"),
                                                                 ("random", "default")]
    for row in (rows[0], rows[2]):
        records = [json.loads(path.read_text()) for path in sorted(results.glob(f"*_{row['method']}-*.json"))]
        a_pr = np.array([record["metrics"]["a_pr"] for record in records])
        assert mean_of(row["A_PR (95 % CI)"]) == f"{a_pr.mean():.3f}" and "[" in row["A_PR (95 % CI)"]
        for header, key in (("Top-PR (95 % CI)", "top_pr"), ("acc @ 50 %", "acc_50")):
            values = [record["metrics"][key] for record in records]
            assert mean_of(row[header]) == f"{np.mean(values):.{2 if key == 'top_pr' else 3}f}"
        assert row["time"] == f"{np.mean([r['timings']['total'] for r in records]):.1f} s"
        assert row["seeds"] == "3 (0–2)"
    # taylor ran one seed of the three: not paired with the others, so a mean without interval or rank
    assert rows[1]["A_PR (95 % CI)"] == f"{make_result('taylor', 0, keeps=0.4).metrics['a_pr']:.3f}"
    assert rows[1]["rank"] == "—" and rows[1]["seeds"] == "1 (0)"
    assert report.tables == 1 and report.rows == 3 and report.kept_out == ()


def test_bold_marks_only_what_paired_intervals_support_and_missing_values_are_dashes(tmp_path):
    for seed in range(2):
        write_result(make_result("lrp", seed, keeps=0.6, total=9.0, flops=0.4), tmp_path)
        write_result(make_result("taylor", seed, keeps=0.5, total=5.0), tmp_path)
    write_result(make_result("ig", 0, keeps=0.5, total=7.0, flops=0.8), tmp_path)
    write_result(make_result("ig", 1, keeps=0.5, total=7.0, flops=0.6, speedup_spread=0.3), tmp_path)
    write_result(make_result("smoothgrad", 0, keeps=0.5, total=7.0, flops=0.2), tmp_path)
    write_result(make_result("smoothgrad", 1, keeps=0.5, total=7.0), tmp_path)  # masked: no FLOPs for this seed
    rows = table_rows(build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text(),
                      "digits-vgg · filters · digits")
    lrp, taylor, ig, smoothgrad = (next(row for row in rows if row["method"] == method)
                                   for method in ("lrp", "taylor", "ig", "smoothgrad"))
    assert lrp["rank"] == "1" and lrp["A_PR (95 % CI)"].startswith("**") and not taylor["A_PR (95 % CI)"].startswith("**")
    assert lrp["FLOPs @ Top-PR"] == "40.0 %" and lrp["params @ Top-PR"] == "20.0 %"  # no interval: never bold
    assert ig["FLOPs @ Top-PR"] == "70.0 %" and ig["params @ Top-PR"] == "35.0 %"
    assert taylor["FLOPs @ Top-PR"] == smoothgrad["FLOPs @ Top-PR"] == "—"  # a mean over some seeds would mislead
    assert lrp["speedup @ Top-PR"] == "1.50x" and ig["speedup @ Top-PR"] == "1.50x (noisy)"  # one seed's spread 30 %
    assert taylor["time"] == "5.0 s" and "**" not in taylor["time"] + lrp["time"]  # one timing: no winner
    assert {row["acc @ 25 %"] for row in rows} == {"**1.000 [1.000, 1.000]**"}  # a tie: all bold


def test_nothing_is_bold_where_nothing_was_compared(tmp_path):
    write_result(make_result("lrp", 0, flops=0.5), tmp_path)
    rows = table_rows(build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text(),
                      "digits-vgg · filters · digits")
    assert rows[0]["rank"] == "1" and "**" not in "".join(rows[0].values())


def test_ranks_follow_paired_intervals_not_means(tmp_path):
    for seed in range(2):
        write_result(make_result("lrp", seed, keeps=0.6), tmp_path)
        write_result(make_result("lrp", seed, variant="epsilon", keeps=0.6, params={"aggregation": "signed"}), tmp_path)
        write_result(make_result("random", seed, keeps=0.1), tmp_path)
    markdown = build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text()
    rows = table_rows(markdown, "digits-vgg · filters · digits")
    assert [row["rank"] for row in rows] == ["1", "1", "3"]  # the first two differ by the methods' jitter only
    assert "2 rows share rank 1 — " in markdown and "includes 0" in markdown


def test_corrupt_and_foreign_json_files_are_reported_and_skipped_not_fatal(tmp_path):
    results = tmp_path / "runs"
    write_result(make_result("lrp", 0), results)
    (results / "binary.json").write_bytes(b"\xff\xfe\x00")
    (results / "broken.json").write_text("{not json")
    (results / "future.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    (results / "notes.json").write_text("[1, 2]")
    lacking = make_result("taylor", 0).to_dict()
    del lacking["metrics"]["acc_50"], lacking["samples"]["reference"]
    (results / "lacking.json").write_text(json.dumps(lacking))
    wrong_type = {**make_result("ig", 0).to_dict(), "seed": "zero"}
    (results / "wrong_type.json").write_text(json.dumps(wrong_type))
    (results / "suite").mkdir()
    write_result(make_result("random", 0), results / "suite")  # subfolders are not read
    report = build_leaderboard([results], tmp_path / "out")
    reasons = {entry.name: entry.reason for entry in report.kept_out}
    assert sorted(reasons) == [f"runs/{name}.json" for name in
                               ("binary", "broken", "future", "lacking", "notes", "wrong_type")]
    assert "unreadable" in reasons["runs/broken.json"] and "unreadable" in reasons["runs/binary.json"]
    assert f"schema version {SCHEMA_VERSION}" in reasons["runs/future.json"]
    assert reasons["runs/lacking.json"] == "it lacks metrics.acc_50: it is damaged or was not written by pxp-bench."
    assert reasons["runs/wrong_type.json"].startswith("seed is 'zero', not an integer")
    markdown = report.markdown.read_text()
    assert [row["method"] for row in table_rows(markdown, "digits-vgg · filters · digits")] == ["lrp"]
    assert "- `runs/broken.json`: result runs/broken.json is unreadable" in markdown
    assert str(tmp_path) not in markdown  # file names relative to the given folder, never absolute


def test_results_of_another_protocol_version_or_grid_are_kept_out_with_file_and_reason(tmp_path):
    write_result(make_result("lrp", 0), tmp_path)
    old = make_result("taylor", 0)
    old.protocol_version = PROTOCOL_VERSION - 1
    old_path = write_result(old, tmp_path)
    coarse_path = write_result(make_result("ig", 0, rates=(0.0, 0.3, 0.6)), tmp_path)
    collection = collect_results([tmp_path], rates=DEFAULT_RATES)
    assert [result["method"] for result in collection.results] == ["lrp"]
    kept = {entry.path: entry.reason for entry in collection.kept_out}
    assert kept[old_path] == (f"protocol version {PROTOCOL_VERSION - 1}, not {PROTOCOL_VERSION}: its numbers are "
                              "measured differently; rerun it with this pxp-bench.")
    assert kept[coarse_path].startswith("grid of 3 rates 0, 0.3, 0.6, not the expected grid of 20 rates 0, 0.05, "
                                        "…, 0.95")
    other_grid = collect_results([tmp_path], rates=(0.0, 0.3, 0.6))  # --rates tabulates that grid instead
    assert [result["method"] for result in other_grid.results] == ["ig"]
    every_grid = build_leaderboard([tmp_path], tmp_path / "out")  # by default, a table per grid
    assert every_grid.tables == 2 and "## digits-vgg · filters · digits · grid of 3 rates 0, 0.3, 0.6\n" in \
        every_grid.markdown.read_text()


def test_the_same_results_give_byte_identical_markdown_and_pngs(tmp_path):
    first_results, second_results = tmp_path / "a" / "runs", tmp_path / "b" / "runs"
    for seed in range(3):
        write_result(make_result("lrp", seed, keeps=0.6), first_results)
        write_result(make_result("random", seed, keeps=0.1), first_results)
        write_result(make_result("lrp", seed, model="digits-resnet"), first_results)
    (first_results / "broken.json").write_text("{")
    shutil.copytree(first_results, second_results)  # elsewhere: no absolute path may leak into the output
    first = build_leaderboard([first_results], tmp_path / "one")
    second = build_leaderboard([second_results], tmp_path / "two")
    assert first.markdown.read_bytes() == second.markdown.read_bytes()
    assert [p.name for p in first.plots] == [p.name for p in second.plots] == [
        "digits_digits-resnet_filters.png", "digits_digits-vgg_filters.png"]
    for one, two in zip(first.plots, second.plots):
        assert one.read_bytes() == two.read_bytes() and b"Software" not in one.read_bytes()
    markdown = first.markdown.read_text()
    assert "![Top-1 accuracy against pruning rate, digits-vgg · filters · digits]" \
           "(plots/digits_digits-vgg_filters.png)" in markdown
    assert "- torch: 2.14.1\n" in markdown and "- device: cpu (x86_64, 2 threads)\n" in markdown


def test_a_rebuild_removes_stale_plots_and_a_rerun_of_a_seed_replaces_the_older_one(tmp_path):
    results, out = tmp_path / "runs", tmp_path / "out"
    write_result(make_result("lrp", 0, keeps=0.2, created="2026-01-01T00:00:00+00:00"), results)
    write_result(make_result("lrp", 0, keeps=0.7, created="2026-02-01T00:00:00+00:00"), results)
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "gone_model_filters.png").write_bytes(b"old")
    report = build_leaderboard([results], out)
    assert sorted(path.name for path in (out / "plots").iterdir()) == ["digits_digits-vgg_filters.png"]
    newest = make_result("lrp", 0, keeps=0.7).metrics["a_pr"]
    [row] = table_rows(report.markdown.read_text(), "digits-vgg · filters · digits")
    assert mean_of(row["A_PR (95 % CI)"]) == f"{newest:.3f}" and row["seeds"] == "1 (0)"


def test_incomparable_runs_are_never_merged_and_the_differing_field_is_shown(tmp_path):
    for seed in range(2):
        write_result(make_result("lrp", seed, weights="packaged:" + "a" * 64), tmp_path)
        write_result(make_result("lrp", seed, weights="packaged:" + "b" * 64, keeps=0.6), tmp_path)
        write_result(make_result("lrp", seed, variant="custom", params={"aggregation": "signed", "init": "one"}),
                     tmp_path)
        write_result(make_result("lrp", seed, variant="custom", params={"aggregation": "abs", "init": "one"}),
                     tmp_path)
        write_result(make_result("taylor", seed, reference=50), tmp_path)
    rows = table_rows(build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text(),
                      "digits-vgg · filters · digits")
    assert len(rows) == 5 and all(row["seeds"] == "2 (0–1)" for row in rows)
    weights = sorted(row["weights"] for row in rows if row["variant"] == "default" and row["method"] == "lrp")
    assert weights == ["packaged:aaaaaaaaaaaa…", "packaged:bbbbbbbbbbbb…"]
    assert sorted(row["method params"] for row in rows if row["variant"] == "custom") == ["aggregation=abs",
                                                                                   "aggregation=signed"]
    assert next(row for row in rows if row["method"] == "taylor")["reference"] == "50"
    assert {row["reference"] for row in rows if row["method"] == "lrp"} == {"30"}


def test_runs_of_one_seed_on_other_classes_split_rows_by_class_hash(tmp_path):
    for seed in range(2):
        write_result(make_result("lrp", seed, class_hash=f"folder-a-{seed}"), tmp_path)
        write_result(make_result("lrp", seed, class_hash=f"folder-b-{seed}"), tmp_path)
    rows = table_rows(build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text(),
                      "digits-vgg · filters · digits")
    assert sorted(row["class hash"] for row in rows) == ["folder-a-0", "folder-a-1", "folder-b-0", "folder-b-1"]


def test_imagenet_tables_show_the_papers_numbers_beside_ours(tmp_path):
    setting = {"model": "vit_b_16", "dataset": "imagenet", "components": "heads"}
    for seed in range(2):
        write_result(make_result("lrp", seed, variant="epsilon", **setting), tmp_path)
        write_result(make_result("ig", seed, **setting), tmp_path)
        write_result(make_result("random", seed, keeps=0.1, **setting), tmp_path)
        write_result(make_result("random", seed, keeps=0.1, classes=range(10), **setting), tmp_path)
        write_result(make_result("lrp", seed), tmp_path)
    markdown = build_leaderboard([tmp_path], tmp_path / "out").markdown.read_text()
    rows = table_rows(markdown, "vit_b_16 · heads · imagenet")
    paper = {(row["method"], row["variant"], row["classes"]): row["paper A_PR"] for row in rows}
    assert paper == {("lrp", "epsilon", "3"): "0.85", ("ig", "default", "3"): "—",
                     ("random", "default", "3"): "0.76", ("random", "default", "10"): "—"}
    assert "the paper averages 20 seeds" in markdown and "arXiv 2408.12568" in markdown
    assert "paper A_PR" not in table_rows(markdown, "digits-vgg · filters · digits")[0]


def test_readme_markers_get_the_generated_findings_and_links_relative_to_the_readme(tmp_path):
    for seed in range(2):
        for model in ("digits-vgg", "digits-resnet"):
            write_result(make_result("lrp", seed, variant="epsilon", model=model), tmp_path / "runs")
            write_result(make_result("random", seed, keeps=0.1, model=model), tmp_path / "runs")
    readme = tmp_path / "docs" / "README.md"
    readme.parent.mkdir()
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nafter\n")
    build_leaderboard([tmp_path / "runs"], tmp_path / "site" / "board", readme=readme)
    text = readme.read_text()
    assert text.startswith(f"intro\n{README_START}\nOver the 2 tables below, methods are compared only on the settings they share") and "\n| method | settings |" in text
    assert text.endswith(f"{README_END}\nafter\n") and "\nold\n" not in text
    assert "(../site/board/plots/summary_improvement_over_lrp-epsilon.png)" in text
    assert "below 0.5 for: random (default)" in text
    for title in ("digits-resnet · filters · digits", "digits-vgg · filters · digits"):
        assert f"- **{title}**: lrp (epsilon) ranks first alone" in text
    assert "[../site/board/README.md](../site/board/README.md)" in text


def test_readme_problems_are_clear_errors_before_anything_is_written(tmp_path):
    write_result(make_result("lrp", 0), tmp_path / "runs")
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="markers"):
        build_leaderboard([tmp_path / "runs"], tmp_path / "out", readme=readme)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="cannot read"):
        update_readme(tmp_path / "missing.md", "x")


def test_missing_folders_and_folders_without_results_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_leaderboard([tmp_path / "nope"], tmp_path / "out")
    with pytest.raises(ConfigError, match="the folders hold no result JSON file"):
        build_leaderboard([tmp_path], tmp_path / "out")


runner = CliRunner()


def one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("Error: ")
    assert "Traceback" not in result.output and all(word in result.stderr for word in words)


def test_leaderboard_cli_summarises_and_warns_once_per_kept_out_file(tmp_path):
    write_result(make_result("lrp", 0), tmp_path / "runs")
    write_result(make_result("taylor", 0), tmp_path / "more")
    (tmp_path / "runs" / "notes.json").write_text("{}")
    result = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), str(tmp_path / "more"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("README.md: 1 table, 2 rows, 1 plot; 1 file kept out\n")
    assert result.stderr.startswith(f"Warning: kept out {tmp_path / 'runs' / 'notes.json'}: ")
    assert len(result.stderr.splitlines()) == 1
    assert (tmp_path / "out" / "plots" / "digits_digits-vgg_filters.png").exists()


def test_leaderboard_cli_errors_are_one_line(tmp_path):
    one_line_error(runner.invoke(app, ["leaderboard", str(tmp_path / "missing")]), "does not exist")
    (tmp_path / "empty").mkdir()
    one_line_error(runner.invoke(app, ["leaderboard", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]),
                   "no result to tabulate")
    write_result(make_result("lrp", 0), tmp_path / "runs")
    (tmp_path / "a_file").write_text("")
    unwritable = str(tmp_path / "a_file" / "out")
    one_line_error(runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", unwritable]),
                   "not writable", "--out")
    one_line_error(runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
                                       "--rates", "0,2"]), "--rates")

"""Verdicts: per-sample outcomes in every record, intervals from the hierarchical bootstrap (coverage
checked by simulation), ranks by paired comparison, the across-settings summary, and `pxp-bench compare`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import leaderboard_result
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.cli import app
from pxp_bench.data.protocol import index_hash
from pxp_bench.metrics import record_metrics
from pxp_bench.leaderboard import build_leaderboard
from pxp_bench.leaderboard.findings import summary_rows
from pxp_bench.leaderboard.tables import group_tables
from pxp_bench.outcomes import ProbeOutcomes, outcomes_record, read_outcomes
from pxp_bench.records import describe_grid
from pxp_bench.results import write_result
from pxp_bench.verdicts.bootstrap import hierarchical_means
from pxp_bench.verdicts.setting import setting_verdict
from test_leaderboard import table_rows

SAMPLES = 2000
RATES = [0.0, 0.5]


def synthetic(method: str, seed: int, hits: np.ndarray, labels: np.ndarray,
              probe: ProbeOutcomes | None = None) -> dict:
    """A complete record whose outcomes are ``hits`` ``[rates, samples]`` (the curve follows from them), with
    the dataset probe ``probe`` (its accuracies and ``<name>_apr`` follow from its counts)."""
    result = leaderboard_result(method, seed, rates=RATES).to_dict()
    correct = [int(row.sum()) for row in hits]
    result["curve"] = [{"rate": rate, "pruned": int(10 * rate), "correct": c, "accuracy": c / len(labels)}
                       for rate, c in zip(RATES, correct)]
    accuracies = None
    if probe is not None:
        accuracies = [int(row.sum()) / int(probe.units.sum()) for row in probe.correct]
        for point, value in zip(result["curve"], accuracies):
            point[f"{probe.name}_accuracy"] = value
        result["samples"].update(probe=probe.name, probe_predictions=int(probe.units.sum()))
    result["metrics"] = record_metrics(RATES, correct, len(labels), layers={},
                                       probe=(probe.name, accuracies) if probe is not None else None)
    result["samples"].update(evaluation=len(labels), evaluation_hash=index_hash(range(len(labels))))
    result["outcomes"] = outcomes_record(hits, labels, index_hash(range(len(labels))), probe=probe)
    return result


def probe_draws(p: float, units: np.ndarray, rng: np.random.Generator) -> ProbeOutcomes:
    """A ``copy`` probe whose samples each get ``units`` predictions, each correct with chance ``p``."""
    return ProbeOutcomes("copy", rng.binomial(units, p, size=(len(RATES), len(units))), units)


def draws(p: float, rng: np.random.Generator) -> np.ndarray:
    return rng.random((len(RATES), SAMPLES)) < p


def test_a_run_records_which_samples_it_classified_correctly_at_each_rate(plugins):
    result = run_benchmark(Benchmark(model="digits-vgg", method="taylor", n_classes=3, rates=(0, 0.5, 0.9),
                                     latency_repeats=0), plugins=plugins).to_dict()
    outcomes = read_outcomes(result)
    assert outcomes is not None and outcomes.evaluation_hash == result["samples"]["evaluation_hash"]
    assert outcomes.correct.shape == (3, result["samples"]["evaluation"])
    assert [int(row.sum()) for row in outcomes.correct] == [point["correct"] for point in result["curve"]]
    assert sorted(np.unique(outcomes.labels)) == [0, 1, 2]  # positions in the record's class order
    assert np.isclose(outcomes.per_sample.mean(), result["metrics"]["a_pr"])
    assert result["diagnostics"]["near_zero_logits_skipped"] == 0  # present in every record


def test_outcomes_that_disagree_with_the_curve_are_not_used():
    record = leaderboard_result("lrp", 0).to_dict()
    assert read_outcomes(record) is not None
    record["curve"][3]["correct"] -= 1
    assert read_outcomes(record) is None


def test_probe_counts_round_trip_and_are_dropped_alone_when_they_disagree_with_the_curve():
    rng = np.random.default_rng(3)
    labels = np.arange(SAMPLES) % 4
    probe = probe_draws(0.7, rng.integers(1, 9, SAMPLES), rng)
    record = synthetic("lrp", 0, draws(0.8, rng), labels, probe)
    outcomes = read_outcomes(json.loads(json.dumps(record)))
    assert outcomes.probe.name == "copy" and np.array_equal(outcomes.probe.correct, probe.correct)
    assert np.array_equal(outcomes.probe.units, probe.units)
    for tamper in (lambda r: r["curve"][1].update(copy_accuracy=r["curve"][1]["copy_accuracy"] + 0.001),
                   lambda r: r["curve"][1].update(copy_accuracy=float("nan")),
                   lambda r: r["curve"][1].update(copy_accuracy=None),
                   lambda r: r["samples"].update(probe="other")):
        tampered = json.loads(json.dumps(record))
        tamper(tampered)
        kept = read_outcomes(tampered)
        assert kept is not None and kept.probe is None  # the accuracy outcomes stay usable


def test_the_probe_a_pr_gets_paired_intervals_that_separate_a_real_difference(tmp_path):
    rng = np.random.default_rng(4)
    labels = np.arange(SAMPLES) % 4
    units = rng.integers(4, 11, SAMPLES)
    records = [synthetic(method, seed, draws(0.8, rng), labels, probe_draws(p, units, rng))
               for method, p in (("lrp", 0.9), ("taylor", 0.6), ("ig", 0.9)) for seed in (0, 1)]
    verdict = setting_verdict([records[0:2], records[2:4], records[4:6]], RATES)
    for row in range(3):
        mean = np.mean([record["metrics"]["copy_apr"] for record in records[2 * row:2 * row + 2]])
        assert verdict.observed["copy_apr"][row] == pytest.approx(mean, abs=1e-6)
        low, high = verdict.interval("copy_apr", row)
        assert low < mean < high and high - low < 0.05
    cells = {row["method"]: row["copy A_PR (95 % CI)"] for row in build_leaderboard_of(records, tmp_path)}
    means = {method: float(cell.strip("*").split()[0]) for method, cell in cells.items()}
    assert means == pytest.approx({"lrp": 0.9, "ig": 0.9, "taylor": 0.6}, abs=0.01)
    assert cells["lrp"].startswith("**") and cells["ig"].startswith("**")  # tied with the best
    assert not cells["taylor"].startswith("**")  # apart from it


def test_equal_methods_share_rank_1_and_a_real_difference_separates_them(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(SAMPLES) % 4
    records = [synthetic("lrp", 0, draws(0.80, rng), labels), synthetic("taylor", 0, draws(0.80, rng), labels),
               synthetic("ig", 0, draws(0.86, rng), labels)]
    tied = build_leaderboard_of(records[:2], tmp_path / "tied")
    assert [row["rank"] for row in tied] == ["1", "1"] and all(row["A_PR (95 % CI)"].startswith("**") for row in tied)
    apart = {row["method"]: row for row in build_leaderboard_of([records[0], records[2]], tmp_path / "apart")}
    assert apart["ig"]["rank"] == "1" and apart["lrp"]["rank"] == "2"
    assert not apart["lrp"]["A_PR (95 % CI)"].startswith("**") and apart["ig"]["Δ A_PR to best (95 % CI)"] == "best"
    low, high = (float(x) for x in apart["lrp"]["Δ A_PR to best (95 % CI)"].split("[")[1].rstrip("]").split(","))
    assert low < -0.06 < high < 0


def build_leaderboard_of(records: list[dict], folder) -> list[dict[str, str]]:
    (folder / "results").mkdir(parents=True)
    for index, record in enumerate(records):
        (folder / "results" / f"{index}.json").write_text(json.dumps(record))
    report = build_leaderboard([folder / "results"], folder / "out", rates=RATES)
    return table_rows(report.markdown.read_text(), f"digits-vgg · filters · digits · {describe_grid(RATES)}")


def test_the_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    labels = np.arange(SAMPLES) % 2
    covered = 0
    for replication in range(200):
        first, second = rng.random((1, SAMPLES)) < 0.80, rng.random((1, SAMPLES)) < 0.86
        rows = [[synthetic("a", 0, np.repeat(first, 2, axis=0), labels)],
                [synthetic("b", 0, np.repeat(second, 2, axis=0), labels)]]
        _, low, high = setting_verdict(rows, RATES, replicates=400, seed=replication).difference("a_pr", 1, 0)
        covered += low <= 0.06 <= high
    assert 0.91 <= covered / 200 <= 0.99


def test_the_bootstrap_resamples_seeds_then_samples_within_classes():
    labels = np.array([0] * 5 + [1] * 15)
    columns = [np.ones((20, 1)), np.zeros((20, 1))]  # seed 0 always right, seed 1 always wrong
    means = hierarchical_means(columns, [labels, labels], replicates=400, seed=0)
    assert means.shape == (400, 2, 1) and set(np.unique(means)) == {0.0, 1.0}  # each slot holds one seed
    assert 0.15 < (means.mean(axis=1) == 1).mean() < 0.35  # both slots drew seed 0: about 1/4
    one_class = [np.where(labels == 0, 1.0, 0.0)[:, None]]
    assert np.all(hierarchical_means(one_class, [labels], replicates=200)[..., 0] == 0.25)  # class sizes kept


def test_records_without_outcomes_are_kept_out_since_nothing_backs_their_curves(tmp_path):
    for seed in range(2):
        write_result(leaderboard_result("lrp", seed, outcomes=False), tmp_path / "results")
        write_result(leaderboard_result("taylor", seed, keeps=0.4), tmp_path / "results")
    report = build_leaderboard([tmp_path / "results"], tmp_path / "out")
    rows = table_rows(report.markdown.read_text(), "digits-vgg · filters · digits")
    assert [row["method"] for row in rows] == ["taylor"]
    assert len(report.kept_out) == 2 and all("no per-sample outcomes" in entry.reason for entry in report.kept_out)


def test_the_summary_ranks_across_settings_and_compares_with_lrp_epsilon(tmp_path):
    for components, keeps in (("filters", 0.5), ("neurons", 0.7)):
        for seed in range(2):
            write_result(leaderboard_result("lrp", seed, variant="epsilon", keeps=keeps, components=components), tmp_path)
            write_result(leaderboard_result("taylor", seed, keeps=keeps + 0.1, components=components), tmp_path)
            write_result(leaderboard_result("random", seed, keeps=keeps - 0.3, components=components), tmp_path)
    tables = group_tables(json.loads(path.read_text()) for path in sorted(tmp_path.glob("*.json")))
    summary = {row.label: row for row in summary_rows(tables)}
    assert summary["taylor (default)"].wins.value == 1 and summary["random (default)"].wins.value == 0 and summary["taylor (default)"].first == 2
    assert summary["taylor (default)"].improvement.low > 0.5 > summary["random (default)"].improvement.high
    assert summary["lrp (epsilon)"].improvement is None and summary["random (default)"].settings == 2 == summary["random (default)"].of_settings
    report = build_leaderboard([tmp_path], tmp_path / "out")
    text = report.markdown.read_text()
    assert "## Across settings" in text and "lies above 0.5 for: taylor (default); below 0.5 for: random (default)" in text
    assert any(path.name.startswith("summary_") for path in report.plots)


def test_compare_prints_the_paired_difference_and_refuses_unpaired_or_old_records(tmp_path):
    for seed in range(2):
        write_result(leaderboard_result("lrp", seed, keeps=0.6), tmp_path / "a")
        write_result(leaderboard_result("random", seed, keeps=0.2), tmp_path / "b")
    runner = CliRunner()
    done = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert done.exit_code == 0, done.output
    found = json.loads(done.output)
    assert found["seeds"] == [0, 1] and found["samples"] == 120
    assert found["a_pr_difference"]["low"] > 0 and found["probability_of_improvement"]["value"] > 0.5
    assert found["verdict"].startswith("the first is better")
    shown = runner.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert shown.exit_code == 0 and "A_PR difference A - B: +" in shown.output and "Verdict:" in shown.output
    old = write_result(leaderboard_result("ig", 0, outcomes=False), tmp_path / "old")
    other_seed = write_result(leaderboard_result("ig", 5), tmp_path / "c")
    write_result(leaderboard_result("lrp", 0), tmp_path / "mixed")
    write_result(leaderboard_result("taylor", 0), tmp_path / "mixed")
    for first, message in ((old, "no per-sample outcomes"), (other_seed, "share no seed"),
                           (tmp_path / "mixed", "different methods"), (tmp_path, "holds no result")):
        refused = runner.invoke(app, ["compare", str(first), str(tmp_path / "b")])
        assert refused.exit_code == 2 and message in refused.output and "Traceback" not in refused.output


@pytest.mark.parametrize("dirty, sha, warning", [
    (False, "a" * 40, None),
    (True, "a" * 40, "made from a tree with uncommitted changes"),
    (False, "b" * 40, "come from another commit than"),
])
def test_the_header_names_the_commits_and_flags_dirty_or_mixed_records(tmp_path, dirty, sha, warning):
    for seed, (record_sha, record_dirty) in enumerate((("a" * 40, False), ("a" * 40, False), (sha, dirty))):
        result = leaderboard_result("lrp", seed)
        result.environment.update(git_sha=record_sha, git_dirty=record_dirty)
        write_result(result, tmp_path / "results")
    text = build_leaderboard([tmp_path / "results"], tmp_path / "out").markdown.read_text()
    assert f"`{'a' * 12}`" in text
    assert ("**Warning:**" in text) == (warning is not None) and (warning is None or warning in text)


def test_lrp_against_the_pruning_criteria_follows_from_the_paired_intervals():
    """The sentence placing LRP among the pruning field's criteria says higher / lower only where the
    paired interval of the A_PR difference excludes 0, and quotes that interval."""
    from pxp_bench.leaderboard.findings import criteria_finding

    runs = [leaderboard_result(method, seed, variant=variant, keeps=keeps, params={"composite": variant}).to_dict()
            for method, variant, keeps in (("lrp", "optimised", 0.6), ("lrp", "epsilon", 0.4), ("lamp", "default", 0.4),
                                           ("hessian", "default", 0.1), ("ablation", "default", 0.6))
            for seed in (0, 1, 2)]
    (table,) = group_tables(runs)
    text = criteria_finding(table)
    verdict, index = table.verdict, {(row.method, row.variant): i for i, row in enumerate(table.rows)}
    for lrp in (("lrp", "optimised"), ("lrp", "epsilon")):
        for criterion, word in (("lamp", None), ("hessian", "higher"), ("ablation", None)):
            value, low, high = verdict.difference("a_pr", index[lrp], index[(criterion, "default")])
            expected = word or ("higher" if low > 0 else "lower" if high < 0 else "no difference shown")
            assert f"{criterion} (default) {value:+.3f} [{low:+.3f}, {high:+.3f}] ({expected})" in text
    assert text.index("lrp (optimised) minus") < text.index("lrp (epsilon) minus")
    assert "taylor" not in text  # absent from the table: not mentioned
    assert criteria_finding(group_tables([run for run in runs if run["method"] != "lrp"])[0]) is None

"""Conditions in the leaderboard (`pxp_bench.conditions`): rows of two conditions never share a table, a table's
heading names its condition (the paper protocol's headings unchanged), a recovery's table shows the one-shot
A_PR and is kept out where that one-shot curve disagrees with itself, and whether the methods' ordering
survives a condition: Kendall's tau from the bootstrap replicates the tables' own intervals use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.leaderboard import README_END, README_START, build_leaderboard
from pxp_bench.leaderboard.conditions import oneshot_problem
from pxp_bench.leaderboard.tables import group_tables
from pxp_bench.metrics import curve_metrics
from pxp_bench.records.samples import redraw
from pxp_bench.verdicts.setting import setting_verdict
from pxp_bench.verdicts.stability import ordering_stability
from test_leaderboard import table_rows
from test_verdicts import synthetic

BOARD = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
SETTING = "digits-vgg · filters · digits"
METHODS = ("lrp-epsilon", "random-default", "magnitude-default", "taylor-default")
"""Committed records of four methods on digits-vgg's filters, three seeds each: real runs the loader redraws."""


def rows_under(markdown: str, title: str) -> list[dict[str, str]]:
    """`table_rows` of the table under heading ``title``, past the line that names its condition."""
    section = markdown.split(f"## {title}\n", 1)[1]
    return table_rows(f"## {title}\n{section[section.index(chr(10) + '|'):]}", title)


def committed(method: str) -> list[Path]:
    """The digits suite's records (the standard grid: digits-beyond's have a grid of their own)."""
    return sorted(path for path in BOARD.glob(f"digits-vgg_filters_{method}_digits_seed*.json")
                  if len(json.loads(path.read_text())["rates"]) == 20)


def with_options(record: dict, **options) -> dict:
    """``record`` as a run under another condition would have stated it: its options name the condition."""
    return {**record, "options": {**record["options"], **options}}


def recovered(record: dict, lost: int = 5, recover: str = "bn", steps: int | None = None) -> dict:
    """``record`` as if run with ``--recover``: its curve taken as the recovered one, and a one-shot curve of
    the same pruned sets that lost ``lost`` more correct samples at every rate above 0, with its metrics."""
    oneshot = [{"rate": point["rate"], "pruned": point["pruned"],
                "correct": max(0, point["correct"] - (lost if point["rate"] > 0 else 0))} for point in record["curve"]]
    total = record["samples"]["evaluation"]
    for point in oneshot:
        point["accuracy"] = point["correct"] / total
    metrics = curve_metrics([p["rate"] for p in oneshot], [p["correct"] for p in oneshot], total)
    options = {"recover": recover, **({"recover_steps": steps} if steps is not None else {})}
    changed = with_options(record, **options)
    return {**changed, "recovery": {
        "kind": recover, "steps": steps, "samples": 640, "samples_hash": redraw(changed).recovery_hash,
        "seconds": 1.25, "oneshot": {"curve": oneshot, "metrics": metrics}}}


def write(records: dict[str, dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        (folder / name).write_text(json.dumps(record))
    return folder


def copies(folder: Path, change, suffix: str, methods=METHODS) -> None:
    """Each committed record of ``methods`` changed by ``change`` into ``folder``, beside the originals."""
    records = {}
    for method in methods:
        for path in committed(method):
            shutil.copy(path, folder / path.name)
            records[f"{path.stem}.{suffix}.json"] = change(json.loads(path.read_text()))
    write(records, folder)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A leaderboard of the four methods under the paper's protocol, under mean removal (the same outcomes:
    its ordering is the paper protocol's) and under BN recalibration (one record's one-shot metrics edited)."""
    root = tmp_path_factory.mktemp("conditions")
    results = root / "results"
    results.mkdir()
    copies(results, lambda record: with_options(record, removal="mean"), "mean")
    copies(results, recovered, "bn")
    edited = results / f"{committed('random-default')[0].stem}.bn.json"
    record = json.loads(edited.read_text())
    record["recovery"]["oneshot"]["metrics"]["a_pr"] += 0.01
    edited.write_text(json.dumps(record))
    readme = root / "README.md"
    readme.write_text(f"intro\n{README_START}\n{README_END}\n")
    report = build_leaderboard([results], root / "out", readme=readme)
    return report, report.markdown.read_text(), readme.read_text()


def test_rows_of_two_conditions_never_share_a_table_and_headings_name_the_condition(board):
    report, markdown, _ = board
    assert report.tables == 3
    headings = [line for line in markdown.splitlines() if line.startswith(f"## {SETTING}")]
    assert headings[:3] == [f"## {SETTING}", f"## {SETTING} · mean removal", f"## {SETTING} · BN recalibration"]
    paper, mean, bn = (rows_under(markdown, heading[3:]) for heading in headings[:3])
    for rows in (paper, mean):
        assert sorted(row["method"] for row in rows) == ["lrp", "magnitude", "random", "taylor"]
        assert all(row["seeds"] == "3 (0–2)" for row in rows)  # three seeds per row: never six
    assert [row["seeds"] for row in bn if row["method"] == "random"] == ["2 (1–2)"]  # its edited seed kept out
    assert "Condition: removal mean · recover none · schedule oneshot · scope global" in markdown
    assert "A table holds one condition" in markdown  # the conventions explain headings once conditions appear


def test_the_paper_protocol_keeps_its_heading_and_columns_without_an_intro(board):
    _, markdown, _ = board
    section = markdown.split(f"## {SETTING}\n", 1)[1].split("\n## ", 1)[0]
    assert section.startswith("\n| rank |") and "Condition:" not in section
    assert "one-shot A_PR" not in table_rows(markdown, SETTING)[0]
    assert "one-shot A_PR" not in rows_under(markdown, f"{SETTING} · mean removal")[0]
    assert "(plots/digits_digits-vgg_filters.png)" in markdown
    assert "(plots/digits_digits-vgg_filters_mean-removal.png)" in markdown


def test_every_table_gets_its_layer_profile_beside_its_curves(board):
    report, markdown, _ = board
    stems = ["digits_digits-vgg_filters", "digits_digits-vgg_filters_mean-removal",
             "digits_digits-vgg_filters_BN-recalibration"]
    assert sorted(path.name for path in report.plots) == sorted(
        [f"{stem}.png" for stem in stems] + [f"{stem}_profile.png" for stem in stems]
        + ["summary_improvement_over_lrp-epsilon.png"])
    for stem in stems:
        assert f"({f'plots/{stem}.png'})\n\n![Layer profile: fraction of each layer pruned per rate, " in markdown
        assert (report.markdown.parent / "plots" / f"{stem}_profile.png").read_bytes().startswith(b"\x89PNG")


def test_a_recovery_table_shows_the_one_shot_a_pr_and_what_the_recovery_was(board):
    report, markdown, _ = board
    rows = rows_under(markdown, f"{SETTING} · BN recalibration")
    header = list(rows[0])
    assert header.index("one-shot A_PR") == header.index("A_PR (95 % CI)") + 1
    for row in rows:
        method = f"{row['method']}-{row['variant']}"
        records = [json.loads(path.read_text()) for path in committed(method)]
        seeds = [int(seed) for seed in row["seeds"].split("(")[1].rstrip(")").replace("–", ",").split(",")]
        records = [record for record in records if record["seed"] in range(seeds[0], seeds[-1] + 1)]
        expected = np.mean([recovered(record)["recovery"]["oneshot"]["metrics"]["a_pr"] for record in records])
        assert row["one-shot A_PR"] == f"{expected:.3f}"
    assert ("Condition: removal zero · recover bn · schedule oneshot · scope global (the paper's protocol: removal "
            "zero · recover none · schedule oneshot · scope global). After pruning, at each rate, BatchNorm "
            "statistics were re-estimated on 640 recovery samples") in markdown


def test_a_record_whose_one_shot_metrics_were_edited_is_kept_out_with_the_reason(board):
    report, markdown, _ = board
    [entry] = report.kept_out
    assert entry.name.endswith(".bn.json") and "random-default_digits_seed0" in entry.name
    assert entry.reason.startswith("recovery.oneshot.metrics.a_pr is ")
    assert "but its one-shot curve gives" in entry.reason
    assert entry.reason.endswith("the record was edited or damaged after it was written; rerun it.")
    assert f"- `{entry.name}`: {entry.reason}" in markdown


def test_real_runs_with_bn_recalibration_get_a_table_of_their_own_with_the_one_shot_a_pr(plugins, tmp_path):
    from pxp_bench.benchmark import Benchmark, run_benchmark
    from pxp_bench.results import write_result

    for method in ("magnitude", "random"):
        for recover in ("none", "bn"):
            bench = Benchmark(model="digits-vgg", method=method, n_classes=3, rates=(0, 0.3, 0.6), latency_repeats=0,
                              recover=recover)
            write_result(run_benchmark(bench, plugins=plugins), tmp_path / "runs")
    report = build_leaderboard([tmp_path / "runs"], tmp_path / "out")
    assert report.kept_out == () and report.tables == 2  # their one-shot curves agree with themselves
    markdown = report.markdown.read_text()
    title = f"{SETTING} · grid of 3 rates 0, 0.3, 0.6"
    paper, bn = table_rows(markdown, title), rows_under(markdown, f"{title} · BN recalibration")
    oneshot = {row["method"]: row["one-shot A_PR"] for row in bn}
    assert oneshot == {row["method"]: row["A_PR (95 % CI)"].replace("**", "").split(" [")[0] for row in paper}
    assert f"## {title}: does the ordering survive?" in markdown


def test_other_inconsistent_recoveries_are_refused(tmp_path):
    record = json.loads(committed("taylor-default")[0].read_text())
    assert oneshot_problem(record) is None and oneshot_problem(recovered(record)) is None
    unnamed = {**recovered(record), "options": record["options"]}
    assert "records a recovery but its options name none" in oneshot_problem(unnamed)
    assert "records no recovery" in oneshot_problem(with_options(record, recover="bn"))
    steps = recovered(record, recover="finetune", steps=20)
    assert oneshot_problem(steps) is None
    steps["recovery"]["steps"] = 30
    assert oneshot_problem(steps).startswith("recovery.steps is 30 but its options name 20")
    pruned = recovered(record)
    pruned["recovery"]["oneshot"]["curve"][3]["pruned"] += 1
    assert "recovery.oneshot.curve[3].pruned" in oneshot_problem(pruned)
    counts = recovered(record)
    counts["recovery"]["oneshot"]["curve"][2]["accuracy"] += 0.001
    assert oneshot_problem(counts).startswith("recovery.oneshot.curve[2].accuracy is ")
    assert "options name no condition pxp-bench has (--removal must be one of zero, mean" in oneshot_problem(
        with_options(record, removal="half"))
    extra = recovered(record)
    extra["recovery"]["oneshot"]["metrics"]["best_ever"] = 1.0
    assert "metrics.best_ever is not a metric a one-shot curve gives" in oneshot_problem(extra)


def test_the_ordering_section_renders_tau_and_who_is_separable_under_each_condition(board):
    _, markdown, readme = board
    section = markdown.split(f"## {SETTING}: does the ordering survive?\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| condition | Kendall tau vs paper protocol | 95 % CI | rows compared | best |")
    cells = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[1:]}
    assert list(cells) == ["paper protocol", "mean removal", "BN recalibration"]
    assert cells["paper protocol"][1:3] == ["reference", "—"]
    assert cells["mean removal"][1:4] == ["1.00", "[1.00, 1.00]", "4"]  # the same outcomes: the same ordering
    assert cells["mean removal"][4] == cells["paper protocol"][4]  # the same best row
    assert cells["BN recalibration"][3] == "3"  # random's seeds differ under BN: it is compared in neither
    assert ("Against the paper protocol, under mean removal the A_PR ordering is the paper protocol's in every "
            "bootstrap replicate (Kendall tau 1.00 [1.00, 1.00] over 4 rows)") in section
    assert "; under BN recalibration the A_PR ordering " in section
    assert f"- **{SETTING}**: Against the paper protocol, under mean removal" in readme
    assert "Over the 1 table below of the paper protocol" in readme  # the summary never mixes conditions


def test_compare_names_the_condition_and_never_merges_two(tmp_path):
    from pxp_bench.verdicts.compare import compare_sides, read_side

    paths = committed("taylor-default")
    paper, mean = tmp_path / "paper", tmp_path / "mean"
    write({path.name: json.loads(path.read_text()) for path in paths}, paper)
    write({path.name: with_options(json.loads(path.read_text()), removal="mean") for path in paths}, mean)
    comparison = compare_sides(read_side(mean), read_side(paper))
    assert comparison.first.label.endswith("digits · mean removal") and comparison.second.label.endswith("· digits")
    assert comparison.difference.value == 0 and comparison.seeds == (0, 1, 2)
    write({f"{path.stem}.mean.json": with_options(json.loads(path.read_text()), removal="mean") for path in paths},
          paper)
    with pytest.raises(ConfigError, match="different methods, settings, parameters or conditions"):
        read_side(paper)
    edited = recovered(json.loads(paths[0].read_text()))
    edited["recovery"]["oneshot"]["metrics"]["top_pr"] = 0.5
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    with pytest.raises(ConfigError, match="recovery.oneshot.metrics.top_pr is 0.5"):
        read_side(tmp_path / "edited.json")


RATES = [0.0, 0.5]


def rows_of(rates_by_row: list[float], seeds=(0, 1), offset: int = 0) -> list[list[dict]]:
    """One row per hit rate, each a record per seed on the same 2,000 samples (drawn per row and seed)."""
    labels = np.arange(2000) % 4
    rows = []
    for index, rate in enumerate(rates_by_row):
        rng = np.random.default_rng(100 * index + offset)
        rows.append([synthetic(f"m{index}", seed, rng.random((len(RATES), len(labels))) < rate, labels)
                     for seed in seeds])
    return rows


def test_tau_is_one_for_the_same_outcomes_and_minus_one_for_the_reversed_ordering():
    rows = rows_of([0.9, 0.8, 0.7, 0.6])
    same = ordering_stability(rows, rows, RATES, replicates=200)
    assert (same.tau, same.low, same.high, same.compared) == (1.0, 1.0, 1.0, 4)
    reversed_ = ordering_stability(rows, rows[::-1], RATES, replicates=200)
    assert (reversed_.tau, reversed_.low, reversed_.high) == (-1.0, -1.0, -1.0)
    assert np.all(reversed_.replicates == -1.0)  # every replicate resamples both conditions alike


def test_tau_replicates_are_those_of_the_tables_own_intervals_and_contain_the_point_estimate():
    reference = rows_of([0.8, 0.78, 0.6, 0.58, 0.4])
    other = rows_of([0.7, 0.72, 0.5, 0.61, 0.3], offset=7)  # other outcomes on the same samples
    found = ordering_stability(reference, other, RATES, replicates=300)
    assert found.compared == 5 and found.low <= found.tau <= found.high and found.low < found.high
    first, second = (setting_verdict(rows, RATES, replicates=300) for rows in (reference, other))
    from scipy.stats import kendalltau
    assert found.tau == pytest.approx(kendalltau(first.observed["a_pr"], second.observed["a_pr"]).statistic)
    expected = [kendalltau(a, b).statistic for a, b in zip(first.replicates["a_pr"], second.replicates["a_pr"])]
    assert np.allclose(found.replicates, expected)  # each table's own replicates, drawn once for both


def test_rows_without_outcomes_on_the_shared_samples_are_not_compared():
    reference = rows_of([0.9, 0.7, 0.5])
    other = rows_of([0.9, 0.7, 0.5], offset=3)
    for record in other[2]:
        record["outcomes"]["evaluation_hash"] = record["samples"]["evaluation_hash"] = "other samples"
    found = ordering_stability(reference, other, RATES, replicates=50)
    assert found.rows == (0, 1)
    assert ordering_stability(reference[:1], other[:1], RATES, replicates=50).tau is None


def test_tables_group_by_condition_with_the_paper_protocol_first():
    records = [record for row in rows_of([0.9, 0.5], seeds=(0,)) for record in row]
    layer = [{**record, "options": {"scope": "layer"}} for record in records]
    finetune = [{**record, "options": {"recover": "finetune"}} for record in records]
    tables = group_tables([*finetune, *layer, *records])
    setting = "digits-vgg · filters · digits · grid of 2 rates 0, 0.5"
    assert [table.title for table in tables] == [setting, f"{setting} · fine-tuning 100 steps",
                                                 f"{setting} · layer-wise"]
    assert [len(table.rows) for table in tables] == [2, 2, 2]

"""The leaderboard document: conventions, one table per (dataset, model, components, grid, condition) with its
plot, layer profile and environment, per setting run under several conditions whether its ordering survives
them, and the files kept out. Only sorted, recorded values go in: no timestamps, no absolute paths, so the
same results give the same text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from pxp_bench.collapse import layer_collapse
from pxp_bench.records import Collection, KeptOut, describe_grid
from pxp_bench.leaderboard.findings import (
    criteria_finding,
    summary_finding,
    summary_rows,
    summary_table,
    summary_tables,
    table_finding,
)
from pxp_bench.leaderboard.paper import paper_a_pr, paper_note, shows_paper
from pxp_bench.leaderboard.provenance import commits_paragraph, provenance_block
from pxp_bench.leaderboard.conditions import condition_conventions, condition_intro, oneshot_a_pr, recovered
from pxp_bench.leaderboard.stability import SettingGroup, setting_groups, stability_section
from pxp_bench.leaderboard.tables import Row, Table, show_value
from pxp_bench.rates import DEFAULT_RATES

MISSING = "—"
ENVIRONMENT_KEYS = ("python", "pxp_bench", "torch", "torchvision", "device")


@dataclass(frozen=True)
class _Metric:
    """A column of means over seeds: which metric, how it is shown, and whether it gets a 95 % interval
    (then its bold marks the rows whose paired interval of their difference to the best includes 0)."""

    header: str
    metric: str
    digits: int
    scale: float = 1.0
    suffix: str = ""
    with_interval: bool = False


INTERVAL_COLUMNS = (
    _Metric("A_PR (95 % CI)", "a_pr", 3, with_interval=True),
    _Metric("Top-PR (95 % CI)", "top_pr", 2, with_interval=True),
    _Metric("acc @ 25 %", "acc_25", 3, with_interval=True),
    _Metric("acc @ 50 %", "acc_50", 3, with_interval=True),
    _Metric("acc @ 75 %", "acc_75", 3, with_interval=True),
)
EFFICIENCY_COLUMNS = (
    _Metric("FLOPs @ Top-PR", "flops", 1, scale=100, suffix=" %"),
    _Metric("params @ Top-PR", "params", 1, scale=100, suffix=" %"),
)
PERPLEXITY_COLUMNS = (
    _Metric("ppl @ 0 %", "ppl_0", 2),
    _Metric("ppl @ 50 %", "ppl_50", 2),
)
"""Language models' perplexity beside their accuracy: means over seeds, no interval, no ranking."""
NOISY_SPREAD = 0.2
"""A speedup whose relative spread (`speedup_at_top_pr_spread`) exceeds this is shown as noisy."""


@dataclass(frozen=True)
class _Column:
    """A table column: its cells, which of them are bold, and its alignment."""

    header: str
    cells: list[str]
    bold: list[bool] | None = None
    numeric: bool = False
    """Right-aligned."""

    def shown(self) -> list[str]:
        return [f"**{cell}**" if self.bold and self.bold[index] else cell for index, cell in enumerate(self.cells)]


def _number(value: float, digits: int, signed: bool = False) -> str:
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _metric_column(table: Table, spec: _Metric) -> _Column:
    """Means over seeds; with an interval where the row is in the paired comparison. Bold (A_PR: rank 1)
    only where intervals were compared, never from means alone."""
    verdict = table.verdict
    cells, bold = [], []
    for index, row in enumerate(table.rows):
        mean, _ = row.stat(spec.metric)
        found = verdict.interval(spec.metric, index) if spec.with_interval else None
        if mean is None:
            cells.append(MISSING)
        elif found is None:
            cells.append(f"{_number(mean * spec.scale, spec.digits)}{spec.suffix}")
        else:
            low, high = (_number(value, spec.digits) for value in found)
            cells.append(f"{_number(mean, spec.digits)} [{low}, {high}]")
        compared = found is not None and len(verdict.paired.rows) > 1
        bold.append(compared and (verdict.rank(index) == 1 if spec.metric == "a_pr"
                                  else verdict.tied_with_best(spec.metric, index)))
    return _Column(spec.header, cells, bold, numeric=True)


def _rank_column(table: Table) -> _Column:
    ranks = [table.verdict.rank(index) for index in range(len(table.rows))]
    return _Column("rank", [MISSING if rank is None else str(rank) for rank in ranks], numeric=True)


def _difference_column(table: Table) -> _Column:
    """Each row's A_PR minus the best row's, with the paired 95 % interval."""
    verdict, best = table.verdict, table.verdict.best()
    cells = []
    for index in range(len(table.rows)):
        found = None if best is None else verdict.difference("a_pr", index, best)
        if index == best:
            cells.append("best")
        elif found is None:
            cells.append(MISSING)
        else:
            value, low, high = found
            cells.append(f"{_number(value, 3, True)} [{_number(low, 3, True)}, {_number(high, 3, True)}]")
    return _Column("Δ A_PR to best (95 % CI)", cells, numeric=True)


def _speedup_cell(row: Row) -> str:
    """The mean speedup at Top-PR over seeds, marked noisy when any seed's spread exceeds `NOISY_SPREAD`
    or was not measured."""
    speedups = [run["metrics"].get("speedup_at_top_pr") for run in row.runs]
    if any(value is None for value in speedups):
        return MISSING
    spreads = [run["metrics"].get("speedup_at_top_pr_spread") for run in row.runs]
    noisy = any(spread is None or spread > NOISY_SPREAD for spread in spreads)
    return f"{sum(speedups) / len(speedups):.2f}x{' (noisy)' if noisy else ''}"


def _time_cell(row: Row) -> str:
    """One run's wall time, or for an optimised row the study's (its real cost)."""
    study = row.optimisation
    if study is not None and study.get("study_wall_s") is not None:
        return f"study {study['study_wall_s']:.0f} s"
    mean, _ = row.stat("time")
    return MISSING if mean is None else f"{mean:.1f} s"


def _collapse_cell(row: Row) -> str:
    """The first rate at which a layer is emptied (`pxp_bench.collapse`), the earliest over the row's
    seeds, with how many seeds collapse within the grid; ``none`` when no seed does."""
    if not all(isinstance(run.get("layers"), dict) and run["layers"] for run in row.runs):
        return MISSING
    rates = [layer_collapse(run["rates"], run["layers"])[0] for run in row.runs]
    collapsed = [rate for rate in rates if rate is not None]
    return f"{min(collapsed):.2f} ({len(collapsed)}/{len(rates)})" if collapsed else "none"


def _agreement_cell(row: Row) -> str:
    """Mean Spearman rho with ablation's scores and mean overlap of the pruned sets at 50 % over the
    seeds (`pxp_bench.agreement`); — unless every seed recorded both."""
    records = [run.get("agreement") for run in row.runs]
    if not all(isinstance(record, dict) and record.get("spearman") is not None
               and record.get("overlap_50") is not None for record in records):
        return MISSING
    rho = sum(record["spearman"] for record in records) / len(records)
    overlap = sum(record["overlap_50"] for record in records) / len(records)
    return f"{rho:.2f} / {overlap:.0%}"


def _seeds(seeds: Sequence[int]) -> str:
    """``3 (0–2)``: the count and the seeds as ranges."""
    spans: list[list[int]] = []
    for seed in seeds:
        if spans and seed == spans[-1][1] + 1:
            spans[-1][1] = seed
        else:
            spans.append([seed, seed])
    ranges = ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
    return f"{len(seeds)} ({ranges})"


def _paper_column(table: Table) -> _Column:
    values = [next((found for variant in row.variants if (found := paper_a_pr(
        table.model, table.components, row.fields["classes"], row.method, variant)) is not None), None)
        for row in table.rows]
    return _Column("paper A_PR", [MISSING if value is None else f"{value:.2f}" for value in values], numeric=True)


def _task_columns(table: Table) -> list[_Column]:
    """A language model's perplexity (means over seeds, no interval) and its dataset probe's A_PR (the
    corpus' copy accuracy, with intervals where the rows' outcomes hold the probe), where runs recorded them."""
    runs = [run for row in table.rows for run in row.runs]
    columns = []
    if any("ppl_0" in run["metrics"] for run in runs):
        columns += [_metric_column(table, spec) for spec in PERPLEXITY_COLUMNS]
    probes = sorted({run["samples"]["probe"] for run in runs if run["samples"].get("probe")})
    columns += [_metric_column(table, _Metric(f"{probe} A_PR (95 % CI)", f"{probe}_apr", 3, with_interval=True))
                for probe in probes]
    return columns


def _columns(table: Table) -> list[_Column]:
    """rank, method, variant, the fields that differ, params (where they split a method and variant), the
    metrics with their intervals (the one-shot A_PR beside the recovered one in tables of a recovery, the
    paper's A_PR beside ours in ImageNet tables), efficiency, seeds, time."""
    rows = table.rows
    columns = [_rank_column(table), _Column("method", [row.method for row in rows]),
               _Column("variant", [row.variant for row in rows])]
    columns += [_Column(name, [show_value(row.fields.get(name)) for row in rows]) for name in table.differing_fields()]
    params = table.params_differences()
    if any(params):
        columns.append(_Column("method params", params))
    metrics = [_metric_column(table, spec) for spec in INTERVAL_COLUMNS]
    columns.append(metrics[0])
    if recovered(table):
        values = [oneshot_a_pr(row) for row in rows]
        columns.append(_Column("one-shot A_PR", [MISSING if value is None else f"{value:.3f}" for value in values],
                               numeric=True))
    columns.append(_difference_column(table))
    if shows_paper(table.dataset):
        columns.append(_paper_column(table))
    columns += metrics[1:]
    columns += _task_columns(table)
    columns += [_metric_column(table, spec) for spec in EFFICIENCY_COLUMNS]
    columns.append(_Column("speedup @ Top-PR", [_speedup_cell(row) for row in rows], numeric=True))
    columns.append(_Column("layer collapse", [_collapse_cell(row) for row in rows], numeric=True))
    agreement = [_agreement_cell(row) for row in rows]
    if any(cell != MISSING for cell in agreement):
        columns.append(_Column("ρ / overlap @ 50 % vs ablation", agreement, numeric=True))
    columns.append(_Column("seeds", [_seeds(row.seeds) for row in rows]))
    columns.append(_Column("time", [_time_cell(row) for row in rows], numeric=True))
    return columns


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def table_markdown(table: Table) -> str:
    """The markdown table of ``table``, with the paper's source under it in ImageNet tables."""
    columns = _columns(table)
    cells = [column.shown() for column in columns]
    lines = ["| " + " | ".join(column.header for column in columns) + " |",
             "|" + "|".join("---:" if column.numeric else "---" for column in columns) + "|"]
    lines += ["| " + " | ".join(_escape(column[index]) for column in cells) + " |" for index in range(len(table.rows))]
    text = "\n".join(lines) + "\n"
    if shows_paper(table.dataset):
        text += "\n" + paper_note(table.components) + "\n"
    return text


def table_section(table: Table, plot_link: str, profile_link: str | None = None) -> str:
    """The table (under a line naming its condition where it is not the paper's protocol), what it says about
    its winners, the provenance of its optimised rows and links to its plot and its layer profile (relative to
    where the text will live; no profile where ``profile_link`` is None)."""
    provenance = provenance_block(table)
    criteria = criteria_finding(table)
    intro = "" if table.condition.is_paper else condition_intro(table) + "\n\n"
    return (f"{intro}{table_markdown(table)}\n{table_finding(table)}\n\n"
            f"{criteria + chr(10) + chr(10) if criteria else ''}"
            f"{provenance + chr(10) if provenance else ''}"
            f"![Top-1 accuracy against pruning rate, {table.title}]({plot_link})\n"
            + (f"\n![Layer profile: fraction of each layer pruned per rate, {table.title}]({profile_link})\n"
               if profile_link else ""))


def _conventions(collection: Collection) -> str:
    sentences = (
        f"Built by `pxp-bench leaderboard` from {len(collection.results)} results, each accepted only where its "
        "curve's counts are its per-sample outcomes', every metric is what its curve gives, and its classes, "
        "sample sets and weights are what its seed and options draw (`pxp_bench.records`; "
        "`pxp-bench verify` reruns records bit for bit).",
        f"A_PR is the mean top-1 accuracy over the pruning {describe_grid(collection.rates or DEFAULT_RATES)}"
        f"{'' if collection.rates else ' unless a title names another grid (a model with fewer components than this grid has rates is run on a grid at which every rate above 0 prunes at least one)'}; Top-PR is the "
        "largest grid rate up to which every rate keeps at least 95 % of the unpruned model's correct "
        "predictions; acc @ 25/50/75 % is the accuracy at that rate (interpolated when the grid lacks it). "
        "Each is the mean over the row's seeds.",
        "The brackets are 95 % intervals from a hierarchical bootstrap (2,000 replicates): resample the seeds, "
        "then each drawn seed's evaluation samples within each class; rows of a table share the resampled "
        "seeds and samples (paired). They cover the seeds' class and reference draws and the finite evaluation "
        "set, not other weights, datasets or hardware (docs/protocol.md, section 11).",
        "Δ A_PR to best is the row's A_PR minus the highest one, with the paired interval of that difference. "
        "rank is 1 + the number of rows whose paired interval of their A_PR difference over this row lies "
        "above 0: rows the data cannot separate share a rank, and rank 1 is bold. In the Top-PR and acc "
        "columns, bold marks the rows whose paired interval of their difference to the column's best includes 0.",
        f"Rows without per-sample outcomes (older records) or on other seeds or samples than the rest show "
        f"means only and rank {MISSING}.",
        *(["ppl @ 0 / 50 % (language models) is the perplexity of the evaluation sequences unpruned and at 50 % "
           "(interpolated), the mean over seeds, without an interval."]
          if any("ppl_0" in result["metrics"] for result in collection.results) else []),
        *(["copy A_PR (the lm-corpus' probe) is the mean over the grid of next-byte accuracy on the copied bytes, "
           "which only induction heads predict, with its 95 % interval from the same bootstrap where every compared "
           "run of the table has the probe's outcomes; bold marks the rows whose paired interval of their "
           "difference to the best includes 0. The rank and the sentences under a table read A_PR only."]
          if any(result["samples"].get("probe") == "copy" for result in collection.results) else []),
        "FLOPs and params @ Top-PR are the fractions of the dense model's left at Top-PR, measured on slimmed "
        f"runs (`evaluate: slim`); {MISSING} where a run of the row was masked. speedup @ Top-PR is the dense "
        "evaluation batch's median latency over the pruned one's, marked noisy when its relative spread "
        f"(from the interquartile ranges) exceeds {NOISY_SPREAD:.0%} or was not measured.",
        "layer collapse is the first grid rate at which some layer is pruned entirely (past it the network is "
        "cut and the curve's cliff says little about the rest), the earliest over the row's seeds, with the "
        "number of seeds that collapse within the grid; none when no seed does.",
        "ρ / overlap @ 50 % vs ablation (where runs recorded it, `--agreement`): Spearman's correlation of the "
        "row's component scores with ablation's (the measured drop of the true-class logit when one component "
        "is masked) on the same reference samples, and the share of the components it prunes at 50 % that "
        "ablation prunes too, each the mean over the seeds.",
        "time is the wall time of one run on the devices listed under the table; for an optimised row, its "
        "study's wall time (the real cost of the row; the run after it is not counted).",
        "Runs share a row only when they agree on parameters, class count, weights, image size, reference size, "
        "autocast and per-layer cap (`--max-layer-rate`); where a table's rows differ in one of these, a column shows it.",
        "Each plot shows the mean accuracy per rate with its 95 % interval band (the same bootstrap), or, "
        "for rows without outcomes, ± one SEM over the seeds. Where the runs record their layers, the layer profile "
        "beside it shows per row where the pruning falls: the fraction of each layer pruned at each rate (averaged "
        "over the seeds), × on a layer pruned entirely in every seed, + in some seeds only.",
        *condition_conventions(collection.results),
    )
    return " ".join(sentences)


def summary_section(tables: Sequence[Table], plot_link: str | None) -> str:
    """The across-settings table, its plot and what it says (the figure a reader looks at first)."""
    rows = summary_rows(tables)
    if not rows:
        return ""
    compared = summary_tables(tables)
    which = "" if len(compared) == len(tables) else (
        f" of the {compared[0].condition.label} (tables of other conditions are compared with them setting by "
        "setting, under “does the ordering survive?”)")
    text = (f"Over the {len(compared)} table{'s' if len(compared) != 1 else ''} below{which}, methods are compared "
            "only on the settings they share: in each table a method's wins are the share of the table's other rows "
            "it beats by A_PR (ties count half; 1 = best of every table it is in, 0 = worst), averaged over the "
            "tables it is in (settings: how many of the compared tables that is). Its probability of improvement "
            "over LRP-epsilon — the chance that a random evaluation sample stays correct at more of the grid's "
            "rates under its pruning than under LRP-epsilon's (ties count half; 0.5 = no difference) — is averaged "
            "over the settings that have both. 95 % intervals from the same bootstrap, stratified by setting.\n\n")
    text += summary_table(rows) + "\n" + summary_finding(rows) + "\n"
    if plot_link:
        text += f"\n![Probability of improvement over LRP-epsilon, with 95 % intervals]({plot_link})\n"
    return text


def environment_block(table: Table) -> str:
    """The distinct versions and devices of a table's runs, sorted."""
    runs = [run for row in table.rows for run in row.runs]
    lines = ["Environment of these runs:", ""]
    for key in ENVIRONMENT_KEYS:
        values = sorted({str(run["environment"].get(key) or "not recorded") for run in runs})
        lines.append(f"- {key}: {', '.join(values)}")
    return "\n".join(lines) + "\n"


def kept_out_block(kept_out: Sequence[KeptOut], not_redrawn: Sequence[KeptOut] = ()) -> str:
    """The files that are not in the tables, each with why, and the results whose samples were not redrawn."""
    if not kept_out:
        lines = ["## Kept out", "", "None: every result file in the given folders is in the tables."]
    else:
        lines = ["## Kept out", "", "These JSON files are not in the tables:", ""]
        lines += [f"- `{entry.name}`: {entry.reason}" for entry in kept_out]
    if not_redrawn:
        lines += ["", "These results are in the tables, but their sample sets could not be redrawn here "
                      "(`pxp-bench verify` checks them by rerunning):", ""]
        lines += [f"- `{entry.name}`: {entry.reason}" for entry in not_redrawn]
    return "\n".join(lines) + "\n"


def plot_names(tables: Sequence[Table]) -> list[str]:
    """A distinct file name per table: ``<dataset>_<model>_<components>.png``, then ``_<condition>`` for another
    condition than the paper's protocol, made filename-safe."""
    names: list[str] = []
    for table in tables:
        condition = "" if table.condition.is_paper else f"_{table.condition.label}"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{table.dataset}_{table.model}_{table.components}{condition}")
        name, counter = f"{stem}.png", 2
        while name in names:
            name, counter = f"{stem}-{counter}.png", counter + 1
        names.append(name)
    return names


def profile_name(plot_name: str) -> str:
    """The file name of a table's layer profile, beside its curves' ``plot_name``: ``<stem>_profile.png``."""
    return f"{plot_name.removesuffix('.png')}_profile.png"


def leaderboard_document(collection: Collection, tables: Sequence[Table], plot_links: Sequence[str],
                         summary_link: str | None, groups: Sequence[SettingGroup] | None = None,
                         profile_links: Sequence[str | None] | None = None) -> str:
    """The whole leaderboard markdown: title, conventions and commits, the across-settings summary, each
    table with its findings, plot, layer profile (``profile_links``, None where a table has none) and
    environment, after the last table of a setting run under several conditions whether its ordering survives
    them (``groups``: `setting_groups` of ``tables`` unless given), and the files kept out."""
    parts = ["# pxp-bench leaderboard\n", _conventions(collection) + "\n", commits_paragraph(collection.results) + "\n"]
    summary = summary_section(tables, summary_link)
    if summary:
        parts += ["## Across settings\n", summary]
    groups = setting_groups(tables) if groups is None else groups
    last = {id(group.others[-1][0]): group for group in groups}
    profiles = profile_links if profile_links is not None else [None] * len(tables)
    for table, link, profile in zip(tables, plot_links, profiles):
        parts += [f"## {table.title}\n", table_section(table, link, profile), environment_block(table)]
        if id(table) in last:
            parts.append(stability_section(last[id(table)]))
    parts.append(kept_out_block(collection.kept_out, collection.not_redrawn))
    return "\n".join(parts)

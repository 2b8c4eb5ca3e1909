"""The leaderboard document: conventions, one table per (dataset, model, components) with its plot and
environment, and the files kept out. Only sorted, recorded values go in: no timestamps, no absolute
paths, so the same results give the same text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from pxp_bench.leaderboard.collect import Collection, KeptOut, describe_grid
from pxp_bench.leaderboard.paper import paper_a_pr, paper_note, shows_paper
from pxp_bench.leaderboard.tables import Row, Table, show_value

MISSING = "—"
ENVIRONMENT_KEYS = ("python", "pxp_bench", "torch", "torchvision", "device")


@dataclass(frozen=True)
class _Metric:
    """A column of means over seeds: which metric, how it is shown, and whether the highest or lowest wins."""

    header: str
    metric: str
    digits: int
    best: Callable[[list[float]], float]
    scale: float = 1.0
    suffix: str = ""
    with_sem: bool = False


METRIC_COLUMNS = (
    _Metric("A_PR (mean ± SEM)", "a_pr", 3, max, with_sem=True),
    _Metric("Top-PR", "top_pr", 2, max),
    _Metric("acc @ 25 %", "acc_25", 3, max),
    _Metric("acc @ 50 %", "acc_50", 3, max),
    _Metric("acc @ 75 %", "acc_75", 3, max),
    _Metric("FLOPs @ Top-PR", "flops", 1, min, scale=100, suffix=" %"),
    _Metric("params @ Top-PR", "params", 1, min, scale=100, suffix=" %"),
    _Metric("time / run", "time", 1, min, suffix=" s"),
)


@dataclass(frozen=True)
class _Column:
    """A table column: its cells and, for a ranked column, what is compared to bold the best."""

    header: str
    cells: list[str]
    scores: list[float | None] | None = None
    """What is compared for bold: the values as shown (None: not shown, or a column nobody wins)."""
    best: Callable[[list[float]], float] | None = None
    numeric: bool = False
    """Right-aligned."""

    def shown(self) -> list[str]:
        """The cells, the best ones bold (all of them on a tie); nothing is bold with fewer than two values,
        where nothing was compared."""
        present = [score for score in self.scores or [] if score is not None]
        if len(present) < 2:
            return self.cells
        top = self.best(present)
        return [f"**{cell}**" if score == top else cell for cell, score in zip(self.cells, self.scores)]


def _metric_cell(row: Row, spec: _Metric) -> tuple[str, float | None]:
    mean, sem = row.stat(spec.metric)
    if mean is None:
        return MISSING, None
    value = round(mean * spec.scale, spec.digits)
    spread = f" ± {sem * spec.scale:.{spec.digits}f}" if spec.with_sem and sem is not None else ""
    return f"{value:.{spec.digits}f}{spread}{spec.suffix}", value


def _metric_column(table: Table, spec: _Metric) -> _Column:
    cells = [_metric_cell(row, spec) for row in table.rows]
    return _Column(spec.header, [text for text, _ in cells], [score for _, score in cells], spec.best, numeric=True)


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
    values = [paper_a_pr(table.model, table.components, row.fields["classes"], row.method, row.variant)
              for row in table.rows]
    return _Column("paper A_PR", [MISSING if value is None else f"{value:.2f}" for value in values], numeric=True)


def _columns(table: Table) -> list[_Column]:
    """method, variant, the fields that differ, params (where they split a method and variant), the
    metrics (the paper's A_PR beside ours in ImageNet tables), seeds, time."""
    rows = table.rows
    columns = [_Column("method", [row.method for row in rows]), _Column("variant", [row.variant for row in rows])]
    columns += [_Column(name, [show_value(row.fields.get(name)) for row in rows]) for name in table.differing_fields()]
    params = table.params_differences()
    if any(params):
        columns.append(_Column("method params", params))
    metrics = [_metric_column(table, spec) for spec in METRIC_COLUMNS]
    columns.append(metrics[0])
    if shows_paper(table.dataset):
        columns.append(_paper_column(table))
    columns += metrics[1:-1]
    columns.append(_Column("seeds", [_seeds(row.seeds) for row in rows]))
    columns.append(metrics[-1])
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


def table_section(table: Table, plot_link: str) -> str:
    """The table and a link to its plot (``plot_link`` relative to where the text will live)."""
    return f"{table_markdown(table)}\n![Top-1 accuracy against pruning rate, {table.title}]({plot_link})\n"


def _conventions(collection: Collection) -> str:
    sentences = (
        f"Built by `pxp-bench leaderboard` from {len(collection.results)} results.",
        f"A_PR is the mean top-1 accuracy over the pruning {describe_grid(collection.rates)}, given as mean ± "
        "SEM over seeds: the standard error of the mean (sample standard deviation / √n), the paper's "
        "convention (it shades the SEM); one seed shows no ±.",
        "Top-PR is the largest grid rate up to which every rate keeps at least 95 % of the unpruned model's "
        "correct predictions; acc @ 25/50/75 % is the accuracy at that rate (interpolated when the grid lacks "
        "it).",
        "FLOPs and params @ Top-PR are the fractions of the dense model's left at Top-PR, measured on slimmed "
        f"runs (`evaluate: slim`); {MISSING} where a run of the row was masked.",
        "time / run is the wall time of one run in seconds, on the devices listed under the table "
        f"({MISSING} for optimised results, whose cost is their study's).",
        "Columns other than A_PR are means over the seeds; the best value of each column is bold (compared as "
        "shown, ties all bold).",
        "Runs share a row only when they agree on parameters, class count, weights, image size, reference size "
        "and autocast; where a table's rows differ in one of these, a column shows it.",
        "Each plot shows the mean accuracy per rate with a band of ± one SEM over the seeds.",
    )
    return " ".join(sentences)


def environment_block(table: Table) -> str:
    """The distinct versions and devices of a table's runs, sorted."""
    runs = [run for row in table.rows for run in row.runs]
    lines = ["Environment of these runs:", ""]
    for key in ENVIRONMENT_KEYS:
        values = sorted({str(run["environment"].get(key) or "not recorded") for run in runs})
        lines.append(f"- {key}: {', '.join(values)}")
    return "\n".join(lines) + "\n"


def kept_out_block(kept_out: Sequence[KeptOut]) -> str:
    """The files that are not in the tables, each with why."""
    if not kept_out:
        return "## Kept out\n\nNone: every JSON file in the given folders is in the tables.\n"
    lines = ["## Kept out", "", "These JSON files are not in the tables:", ""]
    lines += [f"- `{entry.name}`: {entry.reason}" for entry in kept_out]
    return "\n".join(lines) + "\n"


def plot_names(tables: Sequence[Table]) -> list[str]:
    """A distinct file name per table: ``<dataset>_<model>_<components>.png``, made filename-safe."""
    names: list[str] = []
    for table in tables:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{table.dataset}_{table.model}_{table.components}")
        name, counter = f"{stem}.png", 2
        while name in names:
            name, counter = f"{stem}-{counter}.png", counter + 1
        names.append(name)
    return names


def leaderboard_document(collection: Collection, tables: Sequence[Table], plot_links: Sequence[str]) -> str:
    """The whole leaderboard markdown: title, conventions, each table with plot and environment, kept out."""
    parts = ["# pxp-bench leaderboard\n", _conventions(collection) + "\n"]
    for table, link in zip(tables, plot_links):
        parts += [f"## {table.title}\n", table_section(table, link), environment_block(table)]
    parts.append(kept_out_block(collection.kept_out))
    return "\n".join(parts)

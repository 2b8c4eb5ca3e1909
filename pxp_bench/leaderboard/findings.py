"""The sentences a leaderboard says about winners, generated from the paired intervals and never written
by hand: who ranks first in each table, and how methods fare against LRP-epsilon across settings."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from pxp_bench.conditions import PAPER
from pxp_bench.leaderboard.tables import BASELINE, Table, condition_order
from pxp_bench.verdicts.setting import TOLERANCE
from pxp_bench.verdicts.summary import Estimate, SummaryRow, across_settings

BASELINE_LABEL = f"{BASELINE[0]} ({BASELINE[1]})"
CHANCE = 0.5
"""A probability of improvement of 0.5: neither method keeps samples correct at more rates."""


def _signed(low: float, value: float, high: float) -> str:
    return f"{value:+.3f} [{low:+.3f}, {high:+.3f}]"


def _names(labels: Sequence[str]) -> str:
    return ", ".join(labels) if labels else "none"


def table_finding(table: Table) -> str:
    """Who ranks first in ``table``, and by how much (paired 95 % intervals of A_PR differences)."""
    verdict, labels = table.verdict, table.labels()
    rows = verdict.paired.rows
    if len(rows) < 2:
        return ("Fewer than two rows have per-sample outcomes on the same seeds and samples: no ranking is "
                "claimed.")
    best = verdict.best()
    first = [row for row in rows if verdict.rank(row) == 1]
    if first == [best]:
        runner = max((row for row in rows if row != best), key=lambda row: verdict.observed["a_pr"][rows.index(row)])
        value, low, high = verdict.difference("a_pr", best, runner)
        return (f"{labels[best]} ranks first alone: its A_PR exceeds the runner-up's, {labels[runner]}, by "
                f"{_signed(low, value, high)} (paired 95 % interval).")
    tied = [row for row in first if row != best]
    closest_call = min(tied, key=lambda row: verdict.difference("a_pr", row, best)[0])
    value, low, high = verdict.difference("a_pr", closest_call, best)
    return (f"{len(first)} rows share rank 1 — {_names([labels[row] for row in first])}: the paired 95 % "
            f"interval of each one's A_PR difference to the highest, {labels[best]}, includes 0 (the widest "
            f"gap: {labels[closest_call]}, {_signed(low, value, high)}).")


LRP_ROWS = (("lrp", "optimised"), ("lrp", "epsilon"))
"""The LRP rows compared with the pruning literature's criteria: the tuned composite and the paper's reference."""
CRITERIA = (("lamp", "default"), ("taylor", "default"), ("group_taylor", "default"), ("hessian", "default"),
            ("ablation", "default"))
"""The criteria of the pruning field an LRP row is compared with (protocol section 3.7), ablation last:
what every criterion approximates."""


def _verdict_word(low: float, high: float) -> str:
    """As the ranks decide (`pxp_bench.verdicts.setting`): an interval beyond 0 by more than rounding."""
    return "higher" if low > TOLERANCE else "lower" if high < -TOLERANCE else "no difference shown"


def criteria_finding(table: Table) -> str | None:
    """Where LRP (optimised, and epsilon) stands against LAMP, Taylor, group Taylor, Hessian and ablation
    in ``table``: each A_PR difference with its paired 95 % interval; None when the table lacks them."""
    index = {(row.method, variant): position for position, row in enumerate(table.rows) for variant in row.variants}
    labels, verdict = table.labels(), table.verdict
    sentences = []
    for lrp in LRP_ROWS:
        if lrp not in index:
            continue
        parts = []
        for criterion in CRITERIA:
            found = verdict.difference("a_pr", index[lrp], index[criterion]) if criterion in index else None
            if found is not None:
                value, low, high = found
                parts.append(f"{labels[index[criterion]]} {_signed(low, value, high)} ({_verdict_word(low, high)})")
        if parts:
            sentences.append(f"{labels[index[lrp]]} minus {'; '.join(parts)}")
    if not sentences:
        return None
    return "Against the pruning criteria (A_PR difference, paired 95 % interval): " + ". ".join(sentences) + "."


def summary_tables(tables: Sequence[Table]) -> list[Table]:
    """The tables the across-settings summary compares: those of one condition, so that a method's wins never
    mix conditions — the paper's protocol where any table has it, else the condition of the most tables."""
    counts = Counter(table.condition for table in tables)
    if not counts:
        return []
    chosen = PAPER if PAPER in counts else min(counts, key=lambda condition: (-counts[condition],
                                                                               condition_order(condition)))
    return [table for table in tables if table.condition == chosen]


def summary_rows(tables: Sequence[Table]) -> list[SummaryRow]:
    """The across-settings summary of `summary_tables` of ``tables``."""
    return across_settings([(table.labels(), table.verdict) for table in summary_tables(tables)])


def _estimate(estimate: Estimate | None, digits: int) -> str:
    if estimate is None:
        return "—"
    return f"{estimate.value:.{digits}f} [{estimate.low:.{digits}f}, {estimate.high:.{digits}f}]"


def summary_table(rows: Sequence[SummaryRow]) -> str:
    """The across-settings table in markdown."""
    lines = [f"| method | settings | rank 1 in | wins over methods sharing a setting (95 % CI) | "
             f"P(improvement over {BASELINE_LABEL}) (95 % CI) |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {row.label} | {row.settings} of {row.of_settings} | {row.first} | {_estimate(row.wins, 2)} | "
              f"{_estimate(row.improvement, 3)} |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_finding(rows: Sequence[SummaryRow]) -> str:
    """Which methods beat, lose to or cannot be told from the baseline across settings."""
    compared = [row for row in rows if row.improvement is not None]
    if not compared:
        return f"No setting has {BASELINE_LABEL} with per-sample outcomes: no method is compared with it."
    above = [row.label for row in compared if row.improvement.low > CHANCE]
    below = [row.label for row in compared if row.improvement.high < CHANCE]
    unresolved = [row.label for row in compared if row.improvement.low <= CHANCE <= row.improvement.high]
    settings = max(row.improvement_settings for row in compared)
    return (f"Against {BASELINE_LABEL} (over the {settings} setting{'s' if settings != 1 else ''} that have it), the 95 % interval of the "
            f"probability of improvement lies above {CHANCE} for: {_names(above)}; below {CHANCE} for: "
            f"{_names(below)}; it includes {CHANCE} (no difference shown) for: {_names(unresolved)}.")

"""Does the ordering survive? For each setting (model · components · dataset · grid) run under the paper's
protocol and under other conditions, how far the methods' A_PR ordering carries over to each other condition
(Kendall's tau with its paired bootstrap interval, `pxp_bench.verdicts.stability`), and who is best and who
is separable from the best under each (each table's own paired ranks). The sentences are generated from the
numbers, never written by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from pxp_bench.leaderboard.tables import Row, Table, canonical
from pxp_bench.verdicts.setting import TOLERANCE
from pxp_bench.verdicts.stability import Stability, ordering_stability

HEADING = "does the ordering survive?"
MISSING = "—"


@dataclass(frozen=True)
class SettingGroup:
    """The tables of one setting: the paper protocol's and those of the other conditions, each with the
    stability of the paper protocol's ordering under it."""

    reference: Table
    others: tuple[tuple[Table, Stability], ...]

    @property
    def setting(self) -> str:
        return self.reference.setting


def _identity(row: Row) -> str:
    """What makes two rows of different conditions the same method configuration (`tables._rows`' key)."""
    return canonical([row.method, row.params, row.fields])


def condition_stability(reference: Table, other: Table) -> Stability:
    """Kendall's tau between ``reference``'s A_PR ordering and ``other``'s over the rows both have (the same
    method, parameters and comparability fields), from replicates both share (`ordering_stability`); its
    ``rows`` index ``reference.rows``."""
    theirs = {_identity(row): row for row in other.rows}
    shared = [index for index, row in enumerate(reference.rows) if _identity(row) in theirs]
    found = ordering_stability([reference.rows[index].runs for index in shared],
                               [theirs[_identity(reference.rows[index])].runs for index in shared],
                               reference.rows[0].runs[0]["rates"])
    return Stability(tuple(shared[index] for index in found.rows), found.tau, found.low, found.high,
                     found.replicates)


def setting_groups(tables: Sequence[Table]) -> list[SettingGroup]:
    """Per setting that has a paper-protocol table and at least one table of another condition, in the tables'
    order: the stability of the paper protocol's ordering under each other condition."""
    by_setting: dict[str, list[Table]] = {}
    for table in tables:
        by_setting.setdefault(table.setting, []).append(table)
    groups = []
    for members in by_setting.values():
        reference = next((table for table in members if table.condition.is_paper), None)
        others = [table for table in members if not table.condition.is_paper]
        if reference is not None and others:
            groups.append(SettingGroup(reference, tuple((table, condition_stability(reference, table))
                                                        for table in others)))
    return groups


def _first(table: Table) -> list[str]:
    """The labels of the rows that share rank 1 (none separable from the best), best first."""
    verdict, labels = table.verdict, table.labels()
    best = verdict.best()
    rows = [row for row in verdict.paired.rows if verdict.rank(row) == 1]
    return [labels[row] for row in sorted(rows, key=lambda row: row != best)]


def _separable(table: Table) -> str:
    """How many compared rows are separable from the best (rank above 1)."""
    rows = table.verdict.paired.rows
    if len(rows) < 2:
        return MISSING
    return f"{sum(table.verdict.rank(row) != 1 for row in rows)} of {len(rows)}"


def _tau(stability: Stability | None) -> tuple[str, str]:
    if stability is None:
        return "reference", MISSING
    if stability.tau is None:
        return MISSING, MISSING
    return f"{stability.tau:.2f}", f"[{stability.low:.2f}, {stability.high:.2f}]"


def stability_table(group: SettingGroup) -> str:
    """The markdown table: per condition, tau against the paper protocol, its interval, the rows compared,
    the best row and the rows not separable from it (rank 1), and how many rows are separable."""
    lines = ["| condition | Kendall tau vs paper protocol | 95 % CI | rows compared | best | "
             "not separable from the best (rank 1) | separable from the best |",
             "|---|---:|---:|---:|---|---|---:|"]
    entries: list[tuple[Table, Stability | None]] = [(group.reference, None), *group.others]
    for table, stability in entries:
        tau, bounds = _tau(stability)
        compared = str(len(table.verdict.paired.rows) if stability is None else stability.compared)
        first = _first(table)
        cells = [table.condition.label, tau, bounds, compared, first[0] if first else MISSING,
                 ", ".join(first[1:]) or ("none other" if first else MISSING), _separable(table)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _agreement(stability: Stability) -> str:
    """What the interval of tau says about the paper protocol's ordering under the other condition."""
    shown = (f"Kendall tau {stability.tau:.2f} [{stability.low:.2f}, {stability.high:.2f}] over "
             f"{stability.compared} rows")
    if stability.low >= 1 - TOLERANCE:
        return f"is the paper protocol's in every bootstrap replicate ({shown})"
    if stability.low > TOLERANCE:
        return f"follows the paper protocol's ({shown}; the 95 % interval lies above 0)"
    if stability.high < -TOLERANCE:
        return f"reverses the paper protocol's ({shown}; the 95 % interval lies below 0)"
    return f"is not shown to follow the paper protocol's ({shown}; the 95 % interval includes 0)"


def _clause(table: Table, stability: Stability) -> str:
    if stability.tau is None:
        ordering = ("cannot be compared with the paper protocol's (fewer than two rows have outcomes on the same "
                    "seeds and samples under both, or one condition ties them all)")
    else:
        ordering = _agreement(stability)
    first = _first(table)
    if not first or len(table.verdict.paired.rows) < 2:
        best = "no ranking is claimed"
    elif len(first) == 1:
        best = f"{first[0]} is best and every other row is separable from it"
    else:
        others = first[1:]
        best = (f"{first[0]} is best and {', '.join(others)} {'is' if len(others) == 1 else 'are'} not separable "
                "from it")
    return f"under {table.condition.label} the A_PR ordering {ordering}; {best}"


def stability_finding(group: SettingGroup) -> str:
    """One sentence on ``group``: per other condition, whether the ordering survives and who is best."""
    clauses = [_clause(table, stability) for table, stability in group.others]
    text = "; ".join(clauses)
    return f"Against the paper protocol, {text}."


def stability_section(group: SettingGroup) -> str:
    """The markdown of ``group``'s section: its heading, the stability table and the generated sentence."""
    return (f"## {group.setting}: {HEADING}\n\n{stability_table(group)}\n{stability_finding(group)}\n")

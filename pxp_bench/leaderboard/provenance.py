"""Where a leaderboard's numbers come from: the commits that made its records (flagging a dirty tree or a
commit other than the rest's) and, for optimised rows, the study each came from and what it cost."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from pxp_bench.leaderboard.tables import Table

SHORT_SHA = 12


def _commit(result: dict[str, Any]) -> str:
    sha = result["environment"].get("git_sha")
    return sha[:SHORT_SHA] if isinstance(sha, str) and sha else "no commit recorded"


def commits_paragraph(results: Sequence[dict[str, Any]]) -> str:
    """Which commit(s) made the records, how many each, and a warning for records of a dirty tree, of a
    commit other than the most common one, or with no commit recorded."""
    commits = Counter(_commit(result) for result in results)
    main, _ = max(commits.items(), key=lambda item: (item[1], item[0]))
    dirty = sum(1 for result in results if result["environment"].get("git_dirty") is not False)
    listed = ", ".join(f"`{sha}` ({count})" for sha, count in sorted(commits.items(), key=lambda i: (-i[1], i[0])))
    text = f"Code: the records were made by commit {listed}"
    text += ", from a clean tree." if not dirty else "."
    warnings = []
    if len(commits) > 1:
        warnings.append(f"{len(results) - commits[main]} record(s) come from another commit than `{main}`")
    if dirty:
        warnings.append(f"{dirty} record(s) were made from a tree with uncommitted changes (or without git)")
    if warnings:
        text += " **Warning:** " + "; ".join(warnings) + ": regenerate them (`make leaderboard-fresh`) before citing."
    return text


def study_sentence(label: str, study: dict[str, Any] | None) -> str:
    """One sentence on the study an optimised row came from."""
    if study is None:
        return (f"- {label}: **no study recorded** (made by an older pxp-bench, or its seeds name different "
                "studies); its cost and tuning are unknown.")
    seeds = ", ".join(str(seed) for seed in study.get("seeds", []))
    parts = [f"study `{study.get('study')}` ({study.get('optimizer')}, tuning seeds {seeds})",
             f"best trial {study.get('trial')}"]
    if study.get("trials_completed") is not None:
        parts.append(f"{study['trials_completed']} trials completed, {study.get('trials_stopped', 0)} stopped, "
                     f"{study.get('distinct_configurations', '?')} distinct configurations")
    if study.get("tuning_a_pr") is not None:
        parts.append(f"tuning A_PR {study['tuning_a_pr']:.3f}")
    if study.get("study_wall_s") is not None:
        parts.append(f"study wall time {study['study_wall_s']:.0f} s")
    return f"- {label}: " + "; ".join(parts) + "."


def provenance_block(table: Table) -> str:
    """The studies of a table's optimised rows (empty when it has none)."""
    labels = table.labels()
    lines = [study_sentence(label, row.optimisation) for label, row in zip(labels, table.rows)
             if "optimised" in row.variants or row.optimisation is not None]
    if not lines:
        return ""
    return "Optimised rows (tuned on the tuning set, never on the evaluation set):\n\n" + "\n".join(lines) + "\n"

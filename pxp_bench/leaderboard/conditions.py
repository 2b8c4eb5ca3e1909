"""The leaderboard's side of conditions (`pxp_bench.conditions`): the line over a table of another condition than
the paper's protocol and the conventions' sentences on them; for records pruned under a recovery (BatchNorm
recalibration, fine-tuning), their one-shot curve checked against itself and the one-shot A_PR shown beside the
recovered one.

A recovered record's ``curve``, ``metrics`` and ``outcomes`` are the recovered model's (the loader recomputes
them as for any record, `pxp_bench.records.recompute`); ``recovery.oneshot`` keeps the curve of the same pruned
sets before recovery and its metrics. Those metrics are recomputed here from that curve with the derivation a
run uses (`pxp_bench.metrics.record_metrics`), and a record whose one-shot metrics, counts or pruned sets do
not follow is kept out of the leaderboard with the first field that disagrees, like any record edited after
it was written.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from pxp_bench.conditions import check_choices, condition_of_record
from pxp_bench.errors import ConfigError
from pxp_bench.metrics import record_metrics
from pxp_bench.records import Collection, KeptOut
from pxp_bench.records.load import rounded_grid
from pxp_bench.records.recompute import RELATIVE_TOLERANCE
from pxp_bench.leaderboard.tables import Row, Table, mean_sem

RERUN = "the record was edited or damaged after it was written; rerun it."
REQUIRED = ("a_pr", "top_pr")
"""The one-shot metrics every recovered record must state; any other it states must be what its curve gives."""
RECOVERY_WORDS = {"bn": "BatchNorm statistics were re-estimated",
                  "finetune": "the pruned model was fine-tuned for {steps} steps"}


class _Problem(Exception):
    """A field of ``recovery`` that is not what the rest of the record makes it."""


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _same(stored: Any, recomputed: Any) -> bool:
    if stored is None or recomputed is None:
        return stored is recomputed
    return (isinstance(stored, (int, float)) and not isinstance(stored, bool)
            and math.isclose(float(stored), float(recomputed), rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12))


def _oneshot_counts(record: dict[str, Any], curve: Any) -> tuple[list[int], int]:
    """The one-shot curve's correct counts and its sample total, checked point by point against the record's
    grid, its recovered curve's pruned counts (the same pruned sets) and its own accuracies."""
    recovered = record["curve"]
    if not isinstance(curve, list) or len(curve) != len(recovered) or not all(isinstance(p, dict) for p in curve):
        raise _Problem(f"recovery.oneshot.curve is not one point per rate of its {len(recovered)}-rate curve")
    total = recovered[0].get("total", record["samples"].get("evaluation"))
    counts = []
    for index, (point, twin) in enumerate(zip(curve, recovered)):
        where = f"recovery.oneshot.curve[{index}]"
        rate = point.get("rate")
        if not isinstance(rate, (int, float)) or rounded_grid([rate]) != rounded_grid([twin["rate"]]):
            raise _Problem(f"{where}.rate is {point.get('rate')!r} but the curve's rate there is {twin['rate']!r}")
        if point.get("pruned") != twin.get("pruned"):
            raise _Problem(f"{where}.pruned is {point.get('pruned')!r} but the recovered curve pruned "
                           f"{twin.get('pruned')!r} there (the one-shot curve is of the same pruned sets)")
        if not _count(point.get("correct")) or point["correct"] > total:
            raise _Problem(f"{where}.correct is {point.get('correct')!r}, not a count of the {total} samples")
        if not _same(point.get("accuracy"), point["correct"] / total):
            raise _Problem(f"{where}.accuracy is {point.get('accuracy')!r} but its counts give "
                           f"{point['correct'] / total!r}")
        counts.append(point["correct"])
    return counts, total


def _per_point(curve: list[dict[str, Any]], key: str) -> list[float] | None:
    """``key`` of every point where every point has it as a number (perplexity, a probe's accuracy), else None."""
    values = [point.get(key) for point in curve]
    return values if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else None


def _probe(record: dict[str, Any], curve: list[dict[str, Any]]) -> tuple[str, list[float]] | None:
    """The record's probe and its one-shot accuracy per rate, where the one-shot curve has it."""
    name = record["samples"].get("probe")
    found = _per_point(curve, f"{name}_accuracy") if isinstance(name, str) else None
    return None if found is None else (name, found)


def _check_oneshot(record: dict[str, Any], oneshot: Any) -> None:
    if not isinstance(oneshot, dict) or not isinstance(oneshot.get("metrics"), dict):
        raise _Problem("recovery.oneshot lacks its curve and metrics")
    curve = oneshot.get("curve")
    counts, total = _oneshot_counts(record, curve)
    slimmed = all("parameters" in point and "flops" in point for point in curve)
    try:
        recomputed = record_metrics(record["rates"], counts, total, layers=record["layers"],
                                    efficiency=curve if slimmed else None, perplexities=_per_point(curve, "perplexity"),
                                    probe=_probe(record, curve))
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        raise _Problem("recovery.oneshot.curve's efficiency figures are not measurements") from None
    stored = oneshot["metrics"]
    for key in sorted(set(REQUIRED) | set(stored)):
        if key not in recomputed:
            raise _Problem(f"recovery.oneshot.metrics.{key} is not a metric a one-shot curve gives")
        if key not in stored or not _same(stored[key], recomputed[key]):
            shown = repr(stored[key]) if key in stored else "absent"
            raise _Problem(f"recovery.oneshot.metrics.{key} is {shown} but its one-shot curve gives "
                           f"{recomputed[key]!r}")


def oneshot_problem(record: dict[str, Any]) -> str | None:
    """Why ``record``'s condition or ``recovery`` disagrees with its options or with itself (None when they
    agree): options naming a choice pxp-bench does not have; a recovery its options do not name, or one they
    name that it does not record; another kind or step count than its options; a one-shot curve off its grid
    or its pruned sets, or whose accuracies or metrics are not what its counts give. ``record`` has passed the
    loader (`pxp_bench.records`)."""
    condition, recovery = condition_of_record(record), record.get("recovery")
    try:
        check_choices(condition.removal, condition.recover, condition.schedule, condition.scope,
                      condition.recover_steps)
    except ConfigError as exc:
        return f"its options name no condition pxp-bench has ({str(exc).rstrip('.')}): {RERUN}"
    if condition.recover == "none":
        return None if recovery is None else f"it records a recovery but its options name none: {RERUN}"
    if not isinstance(recovery, dict):
        return (f"its options name recovery {condition.recover} but it records no recovery (nor its one-shot "
                f"curve): {RERUN}")
    try:
        if recovery.get("kind") != condition.recover:
            raise _Problem(f"recovery.kind is {recovery.get('kind')!r} but its options name {condition.recover!r}")
        if recovery.get("steps") != condition.recover_steps:
            raise _Problem(f"recovery.steps is {recovery.get('steps')!r} but its options name "
                           f"{condition.recover_steps!r}")
        if not _count(recovery.get("samples")) or not isinstance(recovery.get("samples_hash"), str):
            raise _Problem(f"recovery.samples is {recovery.get('samples')!r}, not a count of samples with their hash")
        seconds = recovery.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise _Problem(f"recovery.seconds is {seconds!r}, not a duration")
        _check_oneshot(record, recovery.get("oneshot"))
    except _Problem as problem:
        return f"{problem}: {RERUN}"
    return None


def _name(path: Path | None, record: dict[str, Any]) -> tuple[Path, str]:
    """The file and its ``<folder>/<file>`` name as the loader shows them (`pxp_bench.records.KeptOut`)."""
    if path is None:
        stem = f"{record['model']}_{record['components']}_{record['method']}-{record['variant']}_seed{record['seed']}"
        return Path(stem), stem
    return Path(path), f"{Path(path).resolve().parent.name}/{Path(path).name}"


def without_inconsistent_recoveries(collection: Collection) -> Collection:
    """``collection`` with the records `oneshot_problem` refuses moved to its kept-out files, with the reason."""
    paths: Sequence[Path | None] = collection.paths or [None] * len(collection.results)
    kept, kept_paths, refused = [], [], []
    for record, path in zip(collection.results, paths):
        problem = oneshot_problem(record)
        if problem is None:
            kept.append(record)
            kept_paths.append(path)
        else:
            refused.append(KeptOut(*_name(path, record), problem))
    if not refused:
        return collection
    gone = {entry.path for entry in refused}
    return replace(collection, results=tuple(kept), kept_out=collection.kept_out + tuple(refused),
                   not_redrawn=tuple(entry for entry in collection.not_redrawn if entry.path not in gone),
                   paths=tuple(kept_paths) if collection.paths else ())


def recovered(table: Table) -> bool:
    """Whether ``table``'s runs were recovered after pruning (its A_PR is the recovered model's)."""
    return table.condition.recover != "none"


def oneshot_a_pr(row: Row) -> float | None:
    """The mean over the row's seeds of the one-shot A_PR (before recovery, on the same pruned sets)."""
    return mean_sem([(run.get("recovery") or {}).get("oneshot", {}).get("metrics", {}).get("a_pr")
                     for run in row.runs])[0]


def _listed(values: Sequence[Any]) -> str:
    shown = sorted({str(value) for value in values}, key=lambda text: (len(text), text))
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def condition_intro(table: Table) -> str:
    """The line over a table of another condition than the paper's protocol: its four choices and, under a
    recovery, what the recovery was and which columns it changes."""
    text = f"Condition: {table.condition.description} (the paper's protocol: removal zero · recover none · " \
           f"schedule oneshot · scope global)."
    if not recovered(table):
        return text
    runs = [run for row in table.rows for run in row.runs]
    what = RECOVERY_WORDS[table.condition.recover].format(steps=table.condition.recover_steps)
    samples = _listed([run["recovery"]["samples"] for run in runs])
    seconds = sum(run["recovery"]["seconds"] for run in runs) / len(runs)
    return (f"{text} After pruning, at each rate, {what} on {samples} recovery samples (training samples of the "
            f"run's classes, never evaluated; {seconds:.1f} s per run on average); A_PR, the intervals, ranks and "
            "every accuracy column are measured after that recovery, and one-shot A_PR is the same pruned sets' "
            "A_PR before it (the mean over the seeds, no interval).")


CONVENTIONS = (
    "A table holds one condition (`pxp_bench.conditions`: how a pruned component is removed, what follows pruning, "
    "how the pruned set grows, where it is taken from); rows never mix conditions. A table of the paper's protocol "
    "(zero removal, no recovery, one shot, global) is titled by its setting alone, a table of another condition "
    "names it after the setting (· mean removal, · BN recalibration, · fine-tuning 100 steps, · iterative, "
    "· layer-wise) and states its four choices above the table. Under a recovery, A_PR, its interval, the ranks "
    "and every accuracy are the recovered model's, and one-shot A_PR is the mean A_PR of the same pruned sets "
    "before recovery. The across-settings summary compares the tables of one condition (the paper's protocol "
    "where present).",
    "Where a setting was run under the paper's protocol and other conditions, its section “does the ordering "
    "survive?” gives, per other condition, Kendall's tau between the A_PR orderings of the rows both conditions "
    "have, with a 95 % interval from the same bootstrap: each replicate's resampled seeds and samples are drawn "
    "once and applied to both conditions' outcomes (the same evaluation samples per seed), and gives one tau. "
    "Beside it, each condition's best row, the rows not separable from it (rank 1) and how many are.",
)
"""The conventions' sentences on conditions (`condition_conventions`)."""


def condition_conventions(results: Sequence[dict[str, Any]]) -> list[str]:
    """`CONVENTIONS` where any of ``results`` ran under another condition than the paper's protocol; none
    otherwise (a leaderboard of the paper's protocol alone reads as before)."""
    return list(CONVENTIONS) if any(not condition_of_record(result).is_paper for result in results) else []

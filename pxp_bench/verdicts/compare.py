"""`pxp-bench compare A B`: the paired difference of two runs (or two folders of one method's seeds),
its 95 % interval and the probability of improvement, for a reader's own results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pxp_bench.conditions import condition_of_record
from pxp_bench.errors import ConfigError
from pxp_bench.leaderboard.conditions import without_inconsistent_recoveries
from pxp_bench.leaderboard.tables import canonical
from pxp_bench.outcomes import read_outcomes
from pxp_bench.records import KeptOut, load_records
from pxp_bench.records.load import rounded_grid
from pxp_bench.verdicts.setting import setting_verdict
from pxp_bench.verdicts.summary import Estimate

IDENTITY = ("model", "components", "dataset", "method", "variant")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its records (one per seed), what they are, and the files kept out of it."""

    source: Path
    runs: tuple[dict[str, Any], ...]
    kept_out: tuple[KeptOut, ...] = ()

    @property
    def label(self) -> str:
        """``method (variant) on model · components · dataset``, then `` · <condition>`` for another condition
        than the paper's protocol."""
        run = self.runs[0]
        condition = condition_of_record(run)
        return (f"{run['method']} ({run['variant']}) on {run['model']} · {run['components']} · {run['dataset']}"
                + ("" if condition.is_paper else f" · {condition.label}"))


@dataclass(frozen=True)
class Comparison:
    first: Side
    second: Side
    seeds: tuple[int, ...]
    samples: int
    """Evaluation samples summed over the paired seeds."""
    a_pr: tuple[Estimate, Estimate]
    difference: Estimate
    """A_PR of the first minus the second's, with its paired interval."""
    improvement: Estimate
    """P(improvement) of the first over the second."""

    @property
    def verdict(self) -> str:
        if self.difference.low > 0:
            return "the first is better: the paired 95 % interval of the difference lies above 0."
        if self.difference.high < 0:
            return "the second is better: the paired 95 % interval of the difference lies below 0."
        return "no difference shown: the paired 95 % interval of the difference includes 0."


def read_side(path: Path) -> Side:
    """The results in ``path`` (a file, or a folder of one method's runs under one condition) that the loader
    accepts (`pxp_bench.records`, and `pxp_bench.leaderboard.conditions` for a recovery's one-shot curve), the
    newest run of each seed; the folder's other files are kept out, with why."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist; give a result JSON file or a folder of results.")
    collection = without_inconsistent_recoveries(load_records([path]))
    if not collection.results:
        if not collection.kept_out:
            raise ConfigError(f"{path} holds no result JSON file; give a result file or a folder of results.")
        first = collection.kept_out[0]
        what = "" if path.is_file() else f"each of its {len(collection.kept_out)} JSON files is kept out (first: {first.path.name}: "
        raise ConfigError(f"{path}: {what}{first.reason}{')' if what else ''}")
    records = collection.results
    kinds = {canonical([record.get(key) for key in IDENTITY] + [record.get("params"),
                                                                condition_of_record(record).description])
             for record in records}
    if len(kinds) > 1:
        raise ConfigError(f"{path} holds results of {len(kinds)} different methods, settings, parameters or "
                          "conditions; give one result file, or a folder with one method's runs under one condition "
                          "(one per seed).")
    by_seed: dict[int, dict[str, Any]] = {}
    for record in records:
        if record["seed"] not in by_seed or record["created"] > by_seed[record["seed"]]["created"]:
            by_seed[record["seed"]] = record
    return Side(path, tuple(by_seed[seed] for seed in sorted(by_seed)), collection.kept_out)


def _paired_seeds(first: Side, second: Side) -> tuple[int, ...]:
    theirs = {run["seed"]: read_outcomes(run).evaluation_hash for run in second.runs}
    return tuple(run["seed"] for run in first.runs if theirs.get(run["seed"]) == read_outcomes(run).evaluation_hash)


def compare_sides(first: Side, second: Side) -> Comparison:
    """The paired comparison of ``first`` and ``second`` over the seeds both evaluated on the same samples."""
    if rounded_grid(first.runs[0]["rates"]) != rounded_grid(second.runs[0]["rates"]):
        raise ConfigError(f"{first.source} and {second.source} were evaluated on different grids of rates; rerun "
                          "one with the other's --rates.")
    seeds = _paired_seeds(first, second)
    if not seeds:
        raise ConfigError(f"{first.source} (seeds {_seeds(first.runs)}) and {second.source} (seeds "
                          f"{_seeds(second.runs)}) share no seed evaluated on the same samples; run both with the "
                          "same --seed, classes and data.")
    rows: Sequence[list[dict[str, Any]]] = [[run for run in side.runs if run["seed"] in seeds] for side in (first, second)]
    verdict = setting_verdict(rows, first.runs[0]["rates"], baseline=1)
    a_pr = tuple(Estimate(float(verdict.observed["a_pr"][index]), *verdict.interval("a_pr", index)) for index in (0, 1))
    value, low, high = verdict.difference("a_pr", 0, 1)
    improvement = verdict.improvement(0)
    samples = sum(len(read_outcomes(run).labels) for run in rows[0])
    return Comparison(first, second, seeds, samples, a_pr, Estimate(value, low, high), Estimate(*improvement))


def _seeds(runs: Sequence[dict[str, Any]]) -> str:
    return ", ".join(str(run["seed"]) for run in runs)


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """What `pxp-bench compare --json` prints."""
    def estimate(found: Estimate) -> dict[str, float]:
        return {"value": found.value, "low": found.low, "high": found.high}

    return {
        "first": {"source": str(comparison.first.source), "label": comparison.first.label,
                  "a_pr": estimate(comparison.a_pr[0])},
        "second": {"source": str(comparison.second.source), "label": comparison.second.label,
                   "a_pr": estimate(comparison.a_pr[1])},
        "seeds": list(comparison.seeds), "samples": comparison.samples, "level": 0.95,
        "a_pr_difference": estimate(comparison.difference),
        "probability_of_improvement": estimate(comparison.improvement),
        "verdict": comparison.verdict,
    }

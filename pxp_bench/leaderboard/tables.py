"""Grouping results into tables and rows: which runs may be averaged together, and their statistics.

A table holds one (dataset, model, components, grid of rates, condition): a model with fewer components than the
standard grid has rates is run on a coarser grid (every rate above 0 must prune something), which makes its own
table, and so does each condition (`pxp_bench.conditions`: removal, recovery, schedule, scope), so that rows
never mix conditions.
A row holds the seeds of one method configuration whose runs are comparable: same parameters, class count,
weights, image size, reference size, autocast and per-layer cap. Variants of a method with the same parameters
(``lrp`` ``default`` and ``epsilon``) are one configuration: one row naming both. The protocol version is equal
for every loaded result (`pxp_bench.records`), so it splits nothing.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from pxp_bench.conditions import PAPER, Condition, condition_of_record
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.records.load import describe_grid, rounded_grid
from pxp_bench.verdicts.setting import SettingVerdict, setting_verdict

CLASS_HASH = "class hash"
METRICS: dict[str, tuple[str, str]] = {
    "a_pr": ("metrics", "a_pr"),
    "top_pr": ("metrics", "top_pr"),
    "acc_25": ("metrics", "acc_25"),
    "acc_50": ("metrics", "acc_50"),
    "acc_75": ("metrics", "acc_75"),
    "flops": ("metrics", "flops_at_top_pr"),
    "params": ("metrics", "params_at_top_pr"),
    "time": ("timings", "total"),
}
"""What a row averages over its seeds, and where each run records it."""
BASELINE = ("lrp", "epsilon")
"""The (method, variant) every other row's probability of improvement is measured against: LRP-epsilon,
the paper's reference composite."""


def canonical(value: Any) -> str:
    """JSON with sorted keys: equal values give equal text, whatever the order they were written in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def show_value(value: Any) -> str:
    """A comparability or parameter value for a reader: None is the default, long hashes are cut to 12."""
    if value is None:
        return "default"
    text = value if isinstance(value, str) else canonical(value)
    return re.sub(r"\b([0-9a-f]{12})[0-9a-f]{8,}\b", r"\1…", text)


def comparability(result: dict[str, Any]) -> dict[str, Any]:
    """The fields besides method, variant and params that make two runs incomparable when they differ."""
    samples = result["samples"]
    return {"classes": len(result["classes"]), "weights": result["weights"], "image size": samples["image_size"],
            "reference": samples["reference"], "amp": samples.get("amp"),
            "max layer rate": samples.get("max_layer_rate")}


def mean_sem(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample stdev / sqrt(n)); the SEM is None for one value.

    Both are None when any value is missing: a mean over some of a row's seeds would be another number.
    """
    if not values or any(value is None for value in values):
        return None, None
    sem = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return statistics.mean(values), sem


VARIANTS_JOINED = " = "
"""How a row of several variants with the same parameters names them: ``default = epsilon``."""


@dataclass(frozen=True)
class Row:
    """The comparable runs of one method configuration, one per seed (sorted by seed)."""

    method: str
    variant: str
    """The configuration's variant names, sorted and joined by `VARIANTS_JOINED` when several name it."""
    params: dict[str, Any]
    fields: dict[str, Any]
    """`comparability` of the runs (plus the class hash when a table's class draws differ)."""
    runs: tuple[dict[str, Any], ...]

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(self.variant.split(VARIANTS_JOINED))

    def names(self, method: str, variant: str) -> bool:
        """Whether this row is ``method`` under the name ``variant`` (among others, perhaps)."""
        return self.method == method and variant in self.variants

    @property
    def seeds(self) -> list[int]:
        return [run["seed"] for run in self.runs]

    def stat(self, metric: str) -> tuple[float | None, float | None]:
        """Mean and SEM over the seeds of one of `METRICS`, or of another key of the runs' ``metrics``."""
        section, key = METRICS.get(metric, ("metrics", metric))
        return mean_sem([run[section].get(key) for run in self.runs])

    @property
    def optimisation(self) -> dict[str, Any] | None:
        """The study the row's runs came from (their ``optimisation`` record), when they all name one."""
        records = [run.get("optimisation") for run in self.runs]
        if not all(isinstance(record, dict) for record in records):
            return None
        return records[0] if all(canonical(record) == canonical(records[0]) for record in records) else None

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Rates, mean accuracy and its SEM over the seeds at each rate (None for one seed)."""
        accuracy = np.array([[point["accuracy"] for point in run["curve"]] for run in self.runs], dtype=float)
        rates = np.array([point["rate"] for point in self.runs[0]["curve"]], dtype=float)
        sem = accuracy.std(axis=0, ddof=1) / math.sqrt(len(self.runs)) if len(self.runs) > 1 else None
        return rates, accuracy.mean(axis=0), sem


@dataclass(frozen=True)
class Table:
    """The rows of one (dataset, model, components, grid, condition), best mean A_PR first."""

    dataset: str
    model: str
    components: str
    rows: tuple[Row, ...]
    rates: tuple[float, ...] = DEFAULT_RATES
    condition: Condition = PAPER

    @property
    def setting(self) -> str:
        """``model · components · dataset`` and the grid where it is not the standard one: what the tables of
        one setting under different conditions share."""
        grid = "" if rounded_grid(self.rates) == rounded_grid(DEFAULT_RATES) else f" · {describe_grid(self.rates)}"
        return f"{self.model} · {self.components} · {self.dataset}{grid}"

    @property
    def title(self) -> str:
        """The setting, and the condition's label where it is not the paper's protocol."""
        return self.setting if self.condition.is_paper else f"{self.setting} · {self.condition.label}"

    @property
    def baseline(self) -> int | None:
        """The first row of `BASELINE`, if the table has one."""
        return next((index for index, row in enumerate(self.rows) if row.names(*BASELINE)), None)

    @cached_property
    def verdict(self) -> SettingVerdict:
        """Intervals, paired differences and ranks of the rows (`pxp_bench.verdicts.setting`)."""
        return setting_verdict([row.runs for row in self.rows], self.rows[0].runs[0]["rates"],
                               baseline=self.baseline)

    def differing_fields(self) -> list[str]:
        """The comparability fields whose values differ between rows: each gets a column."""
        names = sorted({name for row in self.rows for name in row.fields})
        return [name for name in names if len({canonical(row.fields.get(name)) for row in self.rows}) > 1]

    def params_differences(self) -> list[str]:
        """Per row, ``k=v`` of the parameters that split it from a row of the same method and variant
        (empty when none does), so that readers see why the rows are separate."""
        groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for row in self.rows:
            groups[(row.method, row.variant)].append(row)
        texts = []
        for row in self.rows:
            siblings = groups[(row.method, row.variant)]
            keys = sorted({key for other in siblings for key in other.params})
            differing = [key for key in keys if len({canonical(other.params.get(key)) for other in siblings}) > 1]
            texts.append(", ".join(f"{key}={show_value(row.params.get(key, 'unset'))}" for key in differing))
        return texts

    def labels(self) -> list[str]:
        """Per row, ``method (variant)`` with whatever tells it apart from the other rows."""
        fields = self.differing_fields()
        labels = []
        for row, params in zip(self.rows, self.params_differences()):
            extras = [f"{name} {show_value(row.fields.get(name))}" for name in fields] + ([params] if params else [])
            labels.append(", ".join([f"{row.method} ({row.variant})", *extras]))
        return labels


def _class_draws_differ(results: Sequence[dict[str, Any]]) -> bool:
    """Whether runs of the same seed and class count drew different classes (another class list, e.g.
    another data folder under the same dataset name): then the class hash splits rows too."""
    draws: dict[tuple[int, int], set[str]] = defaultdict(set)
    for result in results:
        draws[(len(result["classes"]), result["seed"])].add(result["samples"]["class_hash"])
    return any(len(hashes) > 1 for hashes in draws.values())


def _rows(results: Sequence[dict[str, Any]]) -> tuple[Row, ...]:
    """Comparable runs merged into rows, the variants of one configuration into one row; of reruns of one
    seed in a row the newest ``created`` counts (then the first variant by name)."""
    split_by_class_hash = _class_draws_differ(results)
    groups: dict[tuple[str, str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    variants: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for result in results:
        fields = comparability(result)
        if split_by_class_hash:
            fields[CLASS_HASH] = result["samples"]["class_hash"]
        key = (result["method"], canonical(result["params"]), canonical(fields))
        variants[key].add(result["variant"])
        by_seed = groups[key]
        seed = result["seed"]
        if seed not in by_seed or (result["created"], by_seed[seed]["variant"]) > (by_seed[seed]["created"],
                                                                                     result["variant"]):
            by_seed[seed] = result
    rows = [Row(method, VARIANTS_JOINED.join(sorted(variants[(method, params, fields)])), json.loads(params),
                json.loads(fields), tuple(by_seed[s] for s in sorted(by_seed)))
            for (method, params, fields), by_seed in groups.items()]
    rows.sort(key=lambda row: (-row.stat("a_pr")[0], row.method, row.variant, canonical(row.params),
                               canonical(row.fields)))
    return tuple(rows)


def condition_order(condition: Condition) -> tuple[bool, str]:
    """How the tables of one setting are ordered: the paper's protocol first, then by the conditions' choices."""
    return not condition.is_paper, condition.description


def group_tables(results: Sequence[dict[str, Any]]) -> list[Table]:
    """One table per (dataset, model, components, grid, condition), in that sort order (the paper's protocol
    first within a setting): a table's runs share one grid, so that their curves can be averaged rate by rate,
    and one condition, so that a row never averages runs pruned, removed or recovered differently."""
    by_table: dict[tuple[str, str, str, tuple[float, ...], Condition], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        by_table[(result["dataset"], result["model"], result["components"], rounded_grid(result["rates"]),
                  condition_of_record(result))].append(result)
    ordered = sorted(by_table.items(), key=lambda item: (item[0][:4], condition_order(item[0][4])))
    return [Table(dataset, model, components, rows=_rows(runs), rates=grid, condition=condition)
            for (dataset, model, components, grid, condition), runs in ordered]

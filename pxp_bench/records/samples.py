"""A record's sample sets redrawn: the classes, reference, tuning and evaluation samples its seed and options
draw (PROTOCOL section 1), the recovery samples of a recovered record (section 14), and the weights its options
load, against what the record says it used.

A record that claims another seed, another class draw or other weights than its samples and outcomes belong
to is refused. The draw needs the dataset (and, for language models, the model's tokenizer) on this machine;
where they cannot be loaded the record is accepted as *not redrawn*, with the reason, and `pxp-bench verify`
remains the check.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from pxp_bench.errors import PxpBenchError
from pxp_bench.outcomes import LABELS_DTYPE
from pxp_bench.records.rerun import CannotRerun, benchmark_of

def _key(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)


LOADED_BY = ("model", "dataset", "data_root", "weights", "image_size", "encoding")
"""The `Benchmark` fields the loaded model and splits depend on: records that share them share one load."""
LOADED_KEPT = 4
"""Loaded (model, dataset) pairs kept for the next records: a folder's records come sorted by model."""


@dataclass(frozen=True)
class Redrawn:
    """What a record's options draw: the protocol's sets, each evaluation sample's class position, the
    weights' identity."""

    sets: Any
    labels: np.ndarray
    weights: str
    recovery_hash: str | None = None
    """The hash of the recovery samples the options draw (`pxp_bench.recovery`), for a recovered record."""


class NotRedrawn(Exception):
    """The sets could not be drawn here (the dataset or a plugin is missing): nothing to compare."""


_loaded: OrderedDict[str, Any] = OrderedDict()
_draws: dict[str, Redrawn] = {}


def _load(bench) -> tuple[Any, Any, Any]:
    from pxp_bench.prepare import load_model_and_data
    from pxp_bench.plan import resolve_model_and_dataset
    from pxp_bench.plugins import get_plugins

    key = _key({name: getattr(bench, name) for name in LOADED_BY})
    if key not in _loaded:
        plugins = get_plugins()
        model, dataset = resolve_model_and_dataset(bench, plugins)
        splits, loaded = load_model_and_data(model, dataset, bench, plugins)
        _loaded[key] = (splits, plugins.tasks.get(loaded.task).load(), loaded.weights)
        while len(_loaded) > LOADED_KEPT:
            _loaded.popitem(last=False)
    _loaded.move_to_end(key)
    return _loaded[key]


def redraw(record: dict[str, Any]) -> Redrawn:
    """The sets ``record``'s seed and options draw; `NotRedrawn` where they cannot be drawn here, a
    `PxpBenchError` where the options cannot draw any (no run could have made the record)."""
    try:
        bench = benchmark_of(record, "cpu")
    except CannotRerun as exc:
        raise NotRedrawn(str(exc)) from None
    key = _key({"seed": bench.seed, "model": bench.model, "dataset": bench.dataset, **record["options"]})
    if key not in _draws:
        try:
            splits, task, weights = _load(bench)
        except PxpBenchError as exc:
            raise NotRedrawn(str(exc).rstrip(".")) from None
        sets = task.draw(splits, n_classes=bench.n_classes, ref_per_class=bench.ref_per_class,
                         tune_per_class=bench.tune_per_class, seed=bench.seed)
        positions = {class_id: position for position, class_id in enumerate(sets.classes)}
        targets = splits.eval.targets
        labels = np.array([positions[int(targets[index])] for index in sets.evaluation], dtype=np.int64)
        _draws[key] = Redrawn(sets, labels, weights, _recovery_hash(bench, splits, sets))
    return _draws[key]


def _recovery_hash(bench, splits, sets) -> str | None:
    from pxp_bench.conditions import condition_of
    from pxp_bench.data.protocol import index_hash
    from pxp_bench.recovery import needed_samples, recovery_indices

    condition = condition_of(bench)
    if condition.recover == "none":
        return None
    drawn = recovery_indices(splits.train.targets, sets, bench.seed)
    return index_hash(drawn[:needed_samples(condition.recover, condition.recover_steps)])


def _labels(record: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(record["outcomes"]["labels"]), dtype=LABELS_DTYPE).astype(np.int64)


def samples_problem(record: dict[str, Any]) -> str | None:
    """Why ``record``'s classes, sample hashes, evaluation labels or weights are not what its seed and
    options draw (None when they are); `NotRedrawn` where they cannot be drawn here. ``record`` has passed
    `pxp_bench.records.recompute` (its outcomes decode)."""
    from pxp_bench.data.protocol import index_hash

    try:
        drawn = redraw(record)
    except PxpBenchError as exc:
        return f"its options cannot draw its samples ({str(exc).rstrip('.')}); it was edited"
    sets, samples = drawn.sets, record["samples"]
    seed = f"seed {record['seed']}"
    found = [("classes", record["classes"], sets.classes),
             ("samples.class_hash", samples.get("class_hash"), index_hash(sets.classes)),
             ("samples.reference_hash", samples.get("reference_hash"), index_hash(sets.reference)),
             ("samples.tuning_hash", samples.get("tuning_hash"), index_hash(sets.tuning)),
             ("samples.tuning_split", samples.get("tuning_split"), sets.tuning_split),
             ("samples.evaluation_hash", samples.get("evaluation_hash"), index_hash(sets.evaluation)),
             ("weights", record["weights"], drawn.weights)]
    if drawn.recovery_hash is not None:
        found.append(("recovery.samples_hash", (record.get("recovery") or {}).get("samples_hash"), drawn.recovery_hash))
    for field, stored, expected in found:
        if stored != expected:
            return (f"{field} is {stored!r}, but {seed} and its options give {expected!r}: the record's seed, "
                    "options or samples were edited; rerun it.")
    if not np.array_equal(_labels(record), drawn.labels):
        return f"outcomes.labels are not the classes of the evaluation samples {seed} draws: they were edited; rerun it."
    return None

"""PROTOCOL section 1's draws: classes, reference / tuning samples per class, the evaluation set.

Every purpose gets its own random stream from ``numpy.random.SeedSequence(seed).spawn``, so that the
classes drawn never depend on which method or model runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pxp_bench.errors import ConfigError
from pxp_bench.specs import DatasetSplits

STREAMS = ("classes", "reference", "tuning", "random_baseline", "sampler", "recovery")
METHOD_STREAMS = ("random_baseline", "sampler")
"""The streams a method draws from (`pxp_bench.api.RunContext`)."""


def seed_streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per purpose; the order of STREAMS is fixed forever (a stream added at its
    end leaves the others' draws as they were: child i of a `SeedSequence` does not depend on how many are
    spawned)."""
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {purpose: np.random.default_rng(child) for purpose, child in zip(STREAMS, children)}


def method_seeds(seed: int) -> dict[str, int]:
    """One integer seed per stream of `METHOD_STREAMS` for the run of ``seed``."""
    streams = seed_streams(seed)
    return {name: int(streams[name].integers(2**63 - 1)) for name in METHOD_STREAMS}


def draw_classes(num_classes: int, n_classes: int | None, rng: np.random.Generator) -> list[int]:
    """``n_classes`` distinct class ids drawn at random (sorted); None = all classes (at least 2)."""
    if num_classes < 2:
        raise ConfigError(f"the dataset has {num_classes} class; at least 2 are needed, since with one class "
                          "every metric is trivially 1.0.")
    if n_classes is None or n_classes == num_classes:
        return list(range(num_classes))
    if not 2 <= n_classes <= num_classes:
        raise ConfigError(
            f"--classes {n_classes} is out of range: the dataset has {num_classes} classes "
            f"(use 2..{num_classes} or 'all'; with one class every metric is trivially 1.0)."
        )
    return sorted(int(c) for c in rng.choice(num_classes, size=n_classes, replace=False))


def draw_per_class(
    targets: Sequence[int],
    classes: list[int],
    per_class: int,
    rng: np.random.Generator,
    *,
    split: str,
    option: str,
    exclude: frozenset[int] = frozenset(),
) -> list[int]:
    """``per_class`` sample indices of each class, drawn without replacement, avoiding ``exclude``."""
    targets = np.asarray(targets)
    chosen: list[int] = []
    for cls in classes:
        pool = [int(i) for i in np.flatnonzero(targets == cls) if int(i) not in exclude]
        if len(pool) < per_class:
            raise ConfigError(
                f"class {cls} has only {len(pool)} available samples in the {split} split, fewer than "
                f"{option} {per_class}. Lower {option} or choose fewer classes."
            )
        chosen.extend(sorted(int(i) for i in rng.choice(pool, size=per_class, replace=False)))
    return chosen


def indices_of_classes(targets: Sequence[int], classes: list[int]) -> list[int]:
    """Every index whose label is one of ``classes``."""
    wanted = set(classes)
    return [i for i, target in enumerate(targets) if target in wanted]


def index_hash(indices: Sequence[int]) -> str:
    """A short stable fingerprint of an index list, recorded in results."""
    return hashlib.sha256(json.dumps([int(i) for i in indices]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ProtocolSets:
    """The classes and the sample indices a run uses (tuning indices refer to ``tuning_split``)."""

    classes: list[int]
    reference: list[int]
    tuning: list[int]
    tuning_split: str
    evaluation: list[int]


def draw_sets(
    splits: DatasetSplits,
    *,
    n_classes: int | None,
    ref_per_class: int,
    tune_per_class: int,
    seed: int,
) -> ProtocolSets:
    """Draw classes, reference and tuning samples and collect the evaluation samples for a run."""
    if ref_per_class < 1:
        raise ConfigError(f"--ref-per-class must be at least 1, got {ref_per_class}.")
    if tune_per_class < 0:
        raise ConfigError(f"--tune-per-class must be 0 or more, got {tune_per_class}.")
    streams = seed_streams(seed)
    classes = draw_classes(splits.num_classes, n_classes, streams["classes"])
    reference = draw_per_class(
        splits.train.targets, classes, ref_per_class, streams["reference"],
        split="train", option="--ref-per-class",
    )
    if splits.tune is not None:
        tuning_split, tuning_targets, exclude = "tune", splits.tune.targets, frozenset()
    else:
        tuning_split, tuning_targets, exclude = "train", splits.train.targets, frozenset(reference)
    tuning = draw_per_class(
        tuning_targets, classes, tune_per_class, streams["tuning"],
        split=tuning_split, option="--tune-per-class", exclude=exclude,
    ) if tune_per_class else []
    evaluation = indices_of_classes(splits.eval.targets, classes)
    return ProtocolSets(classes, reference, tuning, tuning_split, evaluation)

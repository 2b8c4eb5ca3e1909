"""Across settings: each method's mean rank and its probability of improvement over a baseline, with
intervals from a bootstrap stratified by setting (each setting keeps its own seeds and samples and is
resampled as `pxp_bench.verdicts.bootstrap` does; a replicate combines every setting's replicate)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.stats import rankdata

from pxp_bench.verdicts.bootstrap import interval
from pxp_bench.verdicts.setting import SettingVerdict


@dataclass(frozen=True)
class Estimate:
    """An observed statistic and its 95 % interval."""

    value: float
    low: float
    high: float

    @classmethod
    def of(cls, observed: float, replicates: np.ndarray) -> Estimate:
        low, high = interval(replicates)
        return cls(float(observed), float(low), float(high))


@dataclass(frozen=True)
class SummaryRow:
    label: str
    settings: int
    """Settings in which the row was compared (its mean rank is over these)."""
    first: int
    """Settings in which it shares rank 1."""
    mean_rank: Estimate
    improvement: Estimate | None
    """Probability of improvement over the baseline, averaged over the settings that have both."""
    improvement_settings: int


def _ranks(a_pr: np.ndarray) -> np.ndarray:
    """Ranks by A_PR, 1 = highest, ties averaged, along the last axis."""
    return rankdata(-a_pr, method="average", axis=-1)


def across_settings(settings: Sequence[tuple[Sequence[str], SettingVerdict]]) -> list[SummaryRow]:
    """One row per label over ``settings`` (each: its table's row labels and verdict), best mean rank first."""
    ranks: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    improvements: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    first: dict[str, int] = defaultdict(int)
    for labels, verdict in settings:
        rows = verdict.paired.rows
        if len(rows) < 2:
            continue
        observed, replicated = _ranks(verdict.observed["a_pr"]), _ranks(verdict.replicates["a_pr"])
        for position, row in enumerate(rows):
            ranks[labels[row]].append((observed[position], replicated[:, position]))
            first[labels[row]] += verdict.rank(row) == 1
            if "improvement" in verdict.observed and row != verdict.baseline:
                improvements[labels[row]].append((verdict.observed["improvement"][position],
                                                  verdict.replicates["improvement"][:, position]))

    def mean(pairs: list[tuple[float, np.ndarray]]) -> Estimate:
        return Estimate.of(float(np.mean([value for value, _ in pairs])), np.mean([r for _, r in pairs], axis=0))

    summary = [SummaryRow(label, len(pairs), first[label], mean(pairs),
                          mean(improvements[label]) if improvements[label] else None, len(improvements[label]))
               for label, pairs in ranks.items()]
    return sorted(summary, key=lambda row: (row.mean_rank.value, row.label))

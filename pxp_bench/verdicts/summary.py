"""Across settings: each method's share of pairwise wins over the methods it shares a setting with, and its
probability of improvement over a baseline, with intervals from a bootstrap stratified by setting (each
setting keeps its own seeds and samples and is resampled as `pxp_bench.verdicts.bootstrap` does; a replicate
combines every setting's replicate).

Methods are run on different sets of settings (a criterion of Torch-Pruning has no ViT heads; a plugin may
cover one model), so a mean rank would compare a method present in 2 easy settings with one present in 7. Each
comparison here is between two methods on a setting both ran: in a setting of n rows a method's win share is
the fraction of the other n - 1 it beats by A_PR, ties counting half (equal to 1 - (rank - 1) / (n - 1) with
ties averaged), and its summary is the mean over the settings it ran, shown with that coverage.
"""

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
    """Settings in which the row was compared (its win share is over these)."""
    of_settings: int
    """Settings compared in all: the coverage is ``settings`` of these."""
    first: int
    """Settings in which it shares rank 1."""
    wins: Estimate
    """The mean over its settings of the share of the other rows it beats by A_PR (ties half)."""
    improvement: Estimate | None
    """Probability of improvement over the baseline, averaged over the settings that have both."""
    improvement_settings: int


def _win_shares(a_pr: np.ndarray) -> np.ndarray:
    """Per row (along the last axis) the share of the other rows it beats by A_PR, ties counting half."""
    rows = a_pr.shape[-1]
    ranks = rankdata(-a_pr, method="average", axis=-1)
    return (rows - ranks) / (rows - 1)


def across_settings(settings: Sequence[tuple[Sequence[str], SettingVerdict]]) -> list[SummaryRow]:
    """One row per label over ``settings`` (each: its table's row labels and verdict), most wins first."""
    wins: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    improvements: dict[str, list[tuple[float, np.ndarray]]] = defaultdict(list)
    first: dict[str, int] = defaultdict(int)
    compared = 0
    for labels, verdict in settings:
        rows = verdict.paired.rows
        if len(rows) < 2:
            continue
        compared += 1
        observed, replicated = _win_shares(verdict.observed["a_pr"]), _win_shares(verdict.replicates["a_pr"])
        for position, row in enumerate(rows):
            wins[labels[row]].append((observed[position], replicated[:, position]))
            first[labels[row]] += verdict.rank(row) == 1
            if "improvement" in verdict.observed and row != verdict.baseline:
                improvements[labels[row]].append((verdict.observed["improvement"][position],
                                                  verdict.replicates["improvement"][:, position]))

    def mean(pairs: list[tuple[float, np.ndarray]]) -> Estimate:
        return Estimate.of(float(np.mean([value for value, _ in pairs])), np.mean([r for _, r in pairs], axis=0))

    summary = [SummaryRow(label, len(pairs), compared, first[label], mean(pairs),
                          mean(improvements[label]) if improvements[label] else None, len(improvements[label]))
               for label, pairs in wins.items()]
    return sorted(summary, key=lambda row: (-row.wins.value, row.label))

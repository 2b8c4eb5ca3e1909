"""Does a method ordering survive a change of condition? Kendall's tau between the methods' A_PR ordering under
one condition (the paper's protocol) and under another (`pxp_bench.conditions`), with a 95 % interval from the
bootstrap every other interval is drawn from (`pxp_bench.verdicts.bootstrap`).

Both conditions' rows enter one `pxp_bench.verdicts.setting.setting_verdict`: a record of each condition for
the same seed was evaluated on the same samples (equal ``evaluation_hash``, which `paired_rows` requires), so a
replicate's resampling of seeds and samples within classes is drawn once and applied to both conditions'
per-sample outcomes. Each replicate gives every row's A_PR under both conditions, hence one tau; the interval
is the percentile interval of those taus. The sampling variation the two orderings share cancels, as it does
in a table's paired ranks: an interval that lies above 0 says the ordering carries over beyond what resampling
the seeds and samples would disturb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.stats import kendalltau

from pxp_bench.verdicts.bootstrap import REPLICATES, SEED, interval
from pxp_bench.verdicts.setting import setting_verdict


@dataclass(frozen=True)
class Stability:
    """Kendall's tau between two conditions' A_PR orderings of the same rows, and its 95 % interval.

    ``tau``, ``low`` and ``high`` are None when fewer than two rows are compared in both conditions, or when
    every compared row has the same A_PR under one of them (no ordering to compare)."""

    rows: tuple[int, ...]
    """The indices (into the given pairs) of the rows compared: those with outcomes on the shared seeds and
    samples under both conditions."""
    tau: float | None
    low: float | None
    high: float | None
    replicates: np.ndarray
    """Tau in each bootstrap replicate (NaN where a replicate ties every row under one condition)."""

    @property
    def compared(self) -> int:
        return len(self.rows)


def _tau(first: np.ndarray, second: np.ndarray) -> float:
    """Kendall's tau-b (ties counted as scipy does); NaN where either side has no ordering at all."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    return float(kendalltau(first, second).statistic)


def ordering_stability(reference: Sequence[Sequence[dict[str, Any]]], other: Sequence[Sequence[dict[str, Any]]],
                       rates: Sequence[float], *, replicates: int = REPLICATES, seed: int = SEED) -> Stability:
    """Kendall's tau between the A_PR ordering of ``reference``'s rows and of ``other``'s.

    ``reference[i]`` and ``other[i]`` are the records (one per seed) of the same method configuration under the
    two conditions, on the grid ``rates``. Rows enter where both conditions have per-sample outcomes on the
    most common seeds and samples (`pxp_bench.verdicts.setting.paired_rows` over both conditions' rows at
    once); tau is computed from the observed A_PRs (means over the seeds) and, for the interval, from the
    A_PRs of every bootstrap replicate, whose seeds and samples both conditions share.
    """
    if len(reference) != len(other):
        raise ValueError("reference and other must pair the same rows: one list of records per row each")
    count = len(reference)
    verdict = setting_verdict([*reference, *other], rates, replicates=replicates, seed=seed)
    rows = tuple(index for index in range(count)
                 if verdict.for_row(index) is not None and verdict.for_row(count + index) is not None)
    empty = np.full(replicates, np.nan)
    if len(rows) < 2:
        return Stability(rows, None, None, None, empty)
    first = [verdict.for_row(index) for index in rows]
    second = [verdict.for_row(count + index) for index in rows]
    observed = _tau(verdict.observed["a_pr"][first], verdict.observed["a_pr"][second])
    values = verdict.replicates["a_pr"]
    taus = np.array([_tau(replicate[first], replicate[second]) for replicate in values])
    finite = taus[np.isfinite(taus)]
    if np.isnan(observed) or not finite.size:
        return Stability(rows, None, None, None, taus)
    low, high = interval(finite)
    return Stability(rows, observed, float(low), float(high), taus)

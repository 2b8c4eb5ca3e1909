"""The verdict on one setting (one leaderboard table): intervals of every metric, paired differences to
the best, ranks that only separate what the intervals separate, and each method's probability of
improvement over a baseline — all from one hierarchical bootstrap (`pxp_bench.verdicts.bootstrap`).
Where every compared record has the same dataset probe (the corpus' ``copy``), its A_PR (``copy_apr``) gets
intervals from the same replicates.

Rows enter the comparison when they have per-sample outcomes for the same seeds on the same evaluation
samples (equal ``evaluation_hash`` per seed); the others keep their means and get no interval.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from pxp_bench.outcomes import Outcomes, read_outcomes
from pxp_bench.verdicts.bootstrap import REPLICATES, SEED, hierarchical_means, interval

INTERVAL_METRICS = ("a_pr", "top_pr", "acc_25", "acc_50", "acc_75")
TOP_PR_KEEP = 0.95
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Paired:
    """The rows that can be compared sample by sample, and their outcomes ``[row][seed]``."""

    rows: tuple[int, ...]
    seeds: tuple[int, ...]
    outcomes: tuple[tuple[Outcomes, ...], ...]


def paired_rows(rows: Sequence[Sequence[dict[str, Any]]]) -> Paired:
    """Of ``rows`` (each a row's records), those with outcomes on the most common seed set and, per seed,
    the most common evaluation samples."""
    read = [{run["seed"]: read_outcomes(run) for run in runs} for runs in rows]
    complete = [index for index, by_seed in enumerate(read) if by_seed and all(by_seed.values())]
    if not complete:
        return Paired((), (), ())
    seed_sets = Counter(tuple(sorted(read[index])) for index in complete)
    seeds = max(seed_sets, key=lambda key: (seed_sets[key], len(key), [-seed for seed in key]))
    hashes = {seed: Counter(read[index][seed].evaluation_hash for index in complete if seed in read[index])
              for seed in seeds}
    common = {seed: counts.most_common(1)[0][0] for seed, counts in hashes.items()}
    chosen = tuple(index for index in complete if tuple(sorted(read[index])) == seeds
                   and all(read[index][seed].evaluation_hash == common[seed] for seed in seeds))
    return Paired(chosen, seeds, tuple(tuple(read[index][seed] for seed in seeds) for index in chosen))


def interpolation(rates: np.ndarray, at: float) -> tuple[int, int, float] | None:
    """Indices and weight to interpolate linearly at ``at`` on the ascending grid (None outside it)."""
    if at < rates[0] - TOLERANCE or at > rates[-1] + TOLERANCE:
        return None
    upper = int(np.searchsorted(rates, at - TOLERANCE))
    if upper == 0 or abs(rates[upper] - at) <= TOLERANCE:
        return upper, upper, 0.0
    lower = upper - 1
    return lower, upper, float((at - rates[lower]) / (rates[upper] - rates[lower]))


def curve_statistics(accuracy: np.ndarray, rates: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of `INTERVAL_METRICS` from per-seed curves ``[..., seeds, rows, rates]``, averaged over
    the seeds, as `pxp_bench.metrics.curve_metrics` defines them (Top-PR on counts: 95 % of rate 0's)."""
    keeps = accuracy * 20 >= accuracy[..., :1] * 19 - TOLERANCE
    last_kept = np.logical_and.accumulate(keeps, axis=-1).sum(axis=-1) - 1
    statistics = {"a_pr": accuracy.mean(axis=-1), "top_pr": rates[last_kept]}
    for at in (25, 50, 75):
        found = interpolation(rates, at / 100)
        if found is not None:
            lower, upper, weight = found
            statistics[f"acc_{at}"] = accuracy[..., lower] * (1 - weight) + accuracy[..., upper] * weight
    return {name: values.mean(axis=-2) for name, values in statistics.items()}


def _common_probe(paired: Paired) -> str | None:
    """The probe every compared record has (by name), or None."""
    names = {None if outcome.probe is None else outcome.probe.name for row in paired.outcomes for outcome in row}
    return next(iter(names)) if len(names) == 1 else None


def _improvement(candidate: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Per sample, 1 where ``candidate`` keeps it correct at more rates than ``baseline``, ½ on a tie."""
    return (candidate > baseline) + 0.5 * (candidate == baseline)


@dataclass(frozen=True)
class SettingVerdict:
    """Intervals, paired differences and ranks of the compared rows of one setting.

    Arrays are indexed by position in ``paired.rows``; `for_row` maps a table row to it.
    """

    paired: Paired
    observed: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]
    """Per metric ``[replicates, compared rows]``; ``improvement`` holds the probability of improvement
    over the baseline row (when there is one)."""
    baseline: int | None
    """The table row the probability of improvement compares with."""

    def for_row(self, row: int) -> int | None:
        return self.paired.rows.index(row) if row in self.paired.rows else None

    def interval(self, metric: str, row: int) -> tuple[float, float] | None:
        position = self.for_row(row)
        if position is None or metric not in self.replicates:
            return None
        low, high = interval(self.replicates[metric][:, position])
        return float(low), float(high)

    def best(self, metric: str = "a_pr") -> int | None:
        """The table row with the highest observed ``metric`` among the compared rows."""
        if metric not in self.observed or not self.paired.rows:
            return None
        return self.paired.rows[int(np.argmax(self.observed[metric]))]

    def difference(self, metric: str, row: int, other: int) -> tuple[float, float, float] | None:
        """``row`` minus ``other``: the observed difference and its paired 95 % interval."""
        first, second = self.for_row(row), self.for_row(other)
        if first is None or second is None or metric not in self.replicates:
            return None
        values = self.replicates[metric]
        low, high = interval(values[:, first] - values[:, second])
        return float(self.observed[metric][first] - self.observed[metric][second]), float(low), float(high)

    def tied_with_best(self, metric: str, row: int) -> bool:
        """Whether ``row``'s paired interval of its difference to the best row includes 0."""
        best = self.best(metric)
        found = None if best is None else self.difference(metric, row, best)
        return found is not None and found[1] <= TOLERANCE and found[2] >= -TOLERANCE

    def rank(self, row: int, metric: str = "a_pr") -> int | None:
        """1 + the number of compared rows whose paired interval of their difference over ``row`` lies
        above 0: rows the data cannot separate share a rank (1, 1, 3, ...)."""
        position = self.for_row(row)
        if position is None:
            return None
        values = self.replicates[metric]
        lows = interval(values - values[:, [position]])[0]
        return 1 + int(np.sum(lows > TOLERANCE))

    def curve_band(self, row: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The 95 % interval of ``row``'s mean accuracy at each rate."""
        position = self.for_row(row)
        if position is None:
            return None
        return interval(self.replicates["curve"][:, position])

    def improvement(self, row: int) -> tuple[float, float, float] | None:
        """P(improvement) of ``row`` over the baseline row: observed value and 95 % interval."""
        position = self.for_row(row)
        if position is None or "improvement" not in self.replicates:
            return None
        low, high = interval(self.replicates["improvement"][:, position])
        return float(self.observed["improvement"][position]), float(low), float(high)


def setting_verdict(rows: Sequence[Sequence[dict[str, Any]]], rates: Sequence[float], *,
                    baseline: int | None = None, replicates: int = REPLICATES, seed: int = SEED) -> SettingVerdict:
    """The verdict on ``rows`` (each a table row's records, one per seed) over the grid ``rates``.

    ``baseline`` (a row index) adds each row's probability of improvement over it: the chance that a
    random evaluation sample stays correct at more of the grid's rates under the row's pruning than under
    the baseline's (ties count half), the paired per-sample form of rliable's probability of improvement.
    """
    paired = paired_rows(rows)
    if not paired.rows:
        return SettingVerdict(paired, {}, {}, None)
    grid = np.asarray(rates, dtype=float)
    n_rows, n_rates = len(paired.rows), len(grid)
    compared_baseline = baseline if baseline in paired.rows else None
    probe = _common_probe(paired)
    columns, labels = [], []
    for seed_index in range(len(paired.seeds)):
        outcomes = [paired.outcomes[row][seed_index] for row in range(n_rows)]
        blocks = [np.concatenate([outcome.correct.T for outcome in outcomes], axis=1)]  # [samples, rows x rates]
        if compared_baseline is not None:
            reference = outcomes[paired.rows.index(compared_baseline)].per_sample
            blocks += [_improvement(o.per_sample, reference)[:, None] for o in outcomes]  # [samples, rows]
        if probe is not None:  # counts, whose ratio of sums is the probe's accuracy
            blocks += [o.probe.correct.T for o in outcomes] + [o.probe.units[:, None] for o in outcomes]
        columns.append(np.concatenate(blocks, axis=1).astype(np.float32))
        labels.append(outcomes[0].labels)
    means = hierarchical_means(columns, labels, replicates=replicates, seed=seed)
    observed_means = np.stack([column.astype(np.float64).mean(axis=0) for column in columns])  # [seeds, K]

    curves = n_rows * n_rates
    improvements = n_rows if compared_baseline is not None else 0

    def split(values: np.ndarray) -> dict[str, np.ndarray]:
        accuracy = values[..., :curves].reshape(*values.shape[:-1], n_rows, n_rates)
        found = curve_statistics(accuracy, grid)
        found["curve"] = accuracy.mean(axis=-3)  # per rate, mean over the seeds: [..., rows, rates]
        if compared_baseline is not None:
            found["improvement"] = values[..., curves:curves + improvements].mean(axis=-2)
        if probe is not None:
            start = curves + improvements
            hits = values[..., start:start + curves].reshape(*values.shape[:-1], n_rows, n_rates)
            units = values[..., start + curves:start + curves + n_rows, None]
            accuracy = np.divide(hits, units, out=np.zeros_like(hits), where=units > 0)  # no probe predictions: 0
            found[f"{probe}_apr"] = accuracy.mean(axis=-1).mean(axis=-2)  # over rates, then seeds
        return found

    return SettingVerdict(paired, split(observed_means), split(means), compared_baseline)

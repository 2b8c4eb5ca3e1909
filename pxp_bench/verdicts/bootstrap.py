"""The hierarchical, stratified, paired bootstrap that every interval of pxp-bench is drawn from.

One replicate resamples the seeds with replacement (each seed is its own class draw and reference draw),
then, for every seed drawn, that seed's evaluation samples with replacement *within each class*
(the class proportions of the evaluation set stay fixed). Methods of one setting share the replicate's
seeds and sample weights, so their differences are paired: the sample-to-sample variation they have in
common cancels.

Written by hand, because the kept libraries lack this design: ``scipy.stats.bootstrap`` resamples
independent observations of one or more samples (``paired=True`` pairs them), but it has neither clusters
(seeds holding samples) nor strata (classes); ``rliable``'s ``StratifiedBootstrap`` resamples runs within
tasks, one level, without pairing methods on shared samples. What a replicate computes here is linear in
the sample weights (per-sample columns), so one matrix product per seed gives every method's per-rate
accuracies at once; the statistics built from them (A_PR, Top-PR, ranks) are in `pxp_bench.verdicts.setting`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

REPLICATES = 2000
SEED = 20241
"""A fixed bootstrap seed: the same records give the same intervals, and a leaderboard regenerates
byte for byte."""
LEVEL = 0.95


def stratified_weights(labels: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``[replicates, samples]`` resampling counts: within each class, as many draws with replacement as
    it has samples (a multinomial), so every replicate keeps the class sizes."""
    weights = np.zeros((replicates, len(labels)), dtype=np.float32)
    rows = np.arange(replicates)[:, None]
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        drawn = rng.integers(len(members), size=(replicates, len(members)))  # draws with replacement
        counts = np.bincount((rows * len(members) + drawn).ravel(), minlength=replicates * len(members))
        weights[:, members] = counts.reshape(replicates, len(members))
    return weights


def hierarchical_means(columns: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
                       replicates: int = REPLICATES, seed: int = SEED) -> np.ndarray:
    """Bootstrap replicates of per-seed means: ``[replicates, seed slots, K]``.

    ``columns[s]`` is ``[samples of seed s, K]``: K per-sample values (e.g. 0/1 hits of every method at
    every rate) and ``labels[s]`` the samples' classes. Slot j of replicate b holds the weighted mean of
    the columns of the seed drawn for that slot, under class-stratified resampling weights drawn anew for
    every slot (a seed drawn twice is resampled twice).
    """
    rng = np.random.default_rng(seed)
    n_seeds = len(columns)
    width = columns[0].shape[1]
    means = np.empty((replicates, n_seeds, width), dtype=np.float64)
    for slot in range(n_seeds):
        drawn = rng.integers(n_seeds, size=replicates) if n_seeds > 1 else np.zeros(replicates, dtype=int)
        for seed_index in range(n_seeds):
            picked = np.flatnonzero(drawn == seed_index)
            if not picked.size:
                continue
            weights = stratified_weights(labels[seed_index], picked.size, rng)
            values = np.asarray(columns[seed_index], dtype=np.float32)
            means[picked, slot] = (weights @ values).astype(np.float64) / len(values)  # exact sums
    return means


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of ``level`` over the first axis (the replicates)."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail], axis=0)
    return low, high

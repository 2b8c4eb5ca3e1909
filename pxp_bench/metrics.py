"""A record's metrics as functions of its curve: A_PR, Top-PR, AUC, accuracy at 25/50/75 %, layer collapse,
efficiency at Top-PR, perplexity points and a probe's accuracy.

One derivation serves both sides: a run computes its metrics with `record_metrics`, and reading a record
back (`pxp_bench.records`) computes them again from the stored curve and refuses a record whose stored
metrics are anything else. Torch-free, so that reading records never loads torch.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from pxp_bench.collapse import layer_collapse

TOP_PR_NUMERATOR, TOP_PR_DENOMINATOR = 19, 20
"""Top-PR keeps at least 19/20 = 95 % of the unpruned model's correct predictions."""


def _interpolated(rates: np.ndarray, accs: np.ndarray, at: float) -> float | None:
    if at < rates[0] - 1e-9 or at > rates[-1] + 1e-9:
        return None
    return float(np.interp(at, rates, accs))


def _at_quartiles(prefix: str, rates: Sequence[float], values: Sequence[float]) -> dict[str, float | None]:
    order = np.argsort(rates, kind="stable")
    r = np.asarray(rates, dtype=float)[order]
    v = np.asarray(values, dtype=float)[order]
    return {f"{prefix}_0": float(v[0]), **{f"{prefix}_{at}": _interpolated(r, v, at / 100) for at in (25, 50, 75)}}


def perplexity_metrics(rates: Sequence[float], perplexities: Sequence[float]) -> dict[str, float | None]:
    """Perplexity at rate 0 and at 25/50/75 % (interpolated as accuracy is), reported beside A_PR."""
    return _at_quartiles("ppl", rates, perplexities)


def probe_metrics(name: str, rates: Sequence[float], accuracies: Sequence[float]) -> dict[str, float | None]:
    """A dataset probe's accuracy averaged over the grid (``<name>_apr``, as A_PR averages accuracy) and at
    rate 0 and 25/50/75 %."""
    return {f"{name}_apr": float(np.mean(accuracies)), **_at_quartiles(name, rates, accuracies)}


def keeps_top_pr_accuracy(correct: int, baseline: int) -> bool:
    """Whether ``correct`` hits keep at least 95 % of ``baseline`` hits, exactly (integers: 19/20)."""
    return correct * TOP_PR_DENOMINATOR >= baseline * TOP_PR_NUMERATOR


def curve_metrics(rates: Sequence[float], correct: Sequence[int], total: int) -> dict[str, float | None]:
    """A_PR (mean top-1 over the grid), Top-PR, normalised trapezoid AUC, accuracy at 25/50/75 %.

    ``correct`` holds the correct-prediction counts per rate out of ``total`` samples. Accuracy at
    25/50/75 % is interpolated linearly when the grid lacks that rate and is None outside the grid's
    span. Top-PR is the largest rate up to which every rate keeps >= 95 % of rate 0's correct
    predictions, compared on the counts.
    """
    order = np.argsort(rates, kind="stable")
    r = np.asarray(rates, dtype=float)[order]
    hits = [int(correct[i]) for i in order]
    a = np.asarray(hits, dtype=float) / total
    span = r[-1] - r[0]
    area = float(np.sum((a[1:] + a[:-1]) * np.diff(r)) / 2 / span) if span > 0 else float(a[0])
    top_pr = 0.0
    for rate, count in zip(r, hits):
        if not keeps_top_pr_accuracy(count, hits[0]):
            break
        top_pr = float(rate)
    return {
        "a_pr": float(a.mean()),
        "top_pr": top_pr,
        "auc": area,
        "acc_25": _interpolated(r, a, 0.25),
        "acc_50": _interpolated(r, a, 0.50),
        "acc_75": _interpolated(r, a, 0.75),
    }


def relative_spread(record: Mapping[str, Any]) -> float:
    """The evaluation batch latency's interquartile range over its median."""
    return record["latency_ms_batch_iqr"] / record["latency_ms_batch"]


def efficiency_metrics(rates: Sequence[float], records: Sequence[Mapping[str, Any] | None],
                       top_pr: float) -> dict[str, float | None]:
    """At Top-PR, the parameters and FLOPs remaining (fractions of rate 0's), the speedup of the
    evaluation batch over rate 0 (the ratio of the medians) and that speedup's relative spread, to first
    order the sum of both latencies' `relative_spread`; None where not measured."""
    by_rate = dict(zip(rates, records))
    dense, at = by_rate.get(0.0), by_rate.get(top_pr)
    if not dense or not at:
        return {"params_at_top_pr": None, "flops_at_top_pr": None, "speedup_at_top_pr": None,
                "speedup_at_top_pr_spread": None}
    speedup = spread = None
    if "latency_ms_batch" in dense and "latency_ms_batch" in at:
        speedup = round(dense["latency_ms_batch"] / at["latency_ms_batch"], 4)
        spread = round(relative_spread(dense) + relative_spread(at), 4)
    return {"params_at_top_pr": round(at["parameters"] / dense["parameters"], 6),
            "flops_at_top_pr": round(at["flops"] / max(1, dense["flops"]), 6),
            "speedup_at_top_pr": speedup, "speedup_at_top_pr_spread": spread}


def record_metrics(rates: Sequence[float], correct: Sequence[int], total: int, *,
                   layers: Mapping[str, Sequence[float]],
                   efficiency: Sequence[Mapping[str, Any]] | None = None,
                   perplexities: Sequence[float] | None = None,
                   probe: tuple[str, Sequence[float]] | None = None) -> dict[str, float | None]:
    """Every metric a record holds: `curve_metrics`, ``collapse_rate`` (`pxp_bench.collapse`), and where the
    curve has them the efficiency at Top-PR (slimmed runs), perplexity points and the probe's
    (name, accuracy per rate) metrics."""
    metrics = curve_metrics(rates, correct, total)
    metrics["collapse_rate"] = layer_collapse(rates, layers)[0]
    if efficiency is not None:
        metrics.update(efficiency_metrics(rates, efficiency, metrics["top_pr"]))
    if perplexities is not None:
        metrics.update(perplexity_metrics(rates, perplexities))
    if probe is not None:
        metrics.update(probe_metrics(probe[0], rates, probe[1]))
    return metrics

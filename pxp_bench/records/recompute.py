"""A record checked against itself: the curve's counts recomputed from the per-sample outcomes, every metric
recomputed from the curve (`pxp_bench.metrics.record_metrics`, the derivation the run itself used).

A record is a chain: outcomes -> curve counts -> accuracies -> metrics. Each link is recomputed here, and a
record whose stored link disagrees with the recomputed one beyond float rounding is refused with the first
field that disagrees. What cannot be recomputed from the record alone (timings, latencies, agreement with
ablation, and the curve's outcomes themselves) is left to `pxp-bench verify`, which reruns the record.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from pxp_bench.metrics import record_metrics
from pxp_bench.outcomes import COUNTS_DTYPE, COUNTS_ENCODING, ENCODING, LABELS_DTYPE

RELATIVE_TOLERANCE = 1e-9
"""Stored and recomputed floats must agree to this relative difference: float rounding, never an edit (an
edit of one sample in a million changes an accuracy by 1e-6)."""

CURVE_KEYS = frozenset({"rate", "pruned", "correct", "accuracy", "total", "perplexity"})
"""The keys a curve point holds besides efficiency figures (slimmed runs) and a probe's ``<name>_accuracy``."""


def _decoded_size(text: Any) -> int:
    """The byte length ``text`` decodes to, without decoding it (a forged count must never allocate)."""
    if not isinstance(text, str) or len(text) % 4:
        raise ValueError("not base64")
    return len(text) // 4 * 3 - text[-2:].count("=")


def _decode(text: str, expected_bytes: int, what: str) -> bytes:
    if _decoded_size(text) != expected_bytes:
        raise ValueError(f"{what} holds {_decoded_size(text)} bytes, not the {expected_bytes} its sample count needs")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is not base64") from None


def _counts(text: Any, count: int, what: str) -> np.ndarray:
    width = np.dtype(COUNTS_DTYPE).itemsize
    return np.frombuffer(_decode(text, count * width, what), dtype=COUNTS_DTYPE).astype(np.int64)


def _per_rate(stored: dict[str, Any], count: int, curve: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Per rate the correct predictions of each sample, and each sample's predictions (``units``)."""
    rows = stored.get("correct")
    if not isinstance(rows, list) or len(rows) != len(curve):
        raise ValueError(f"outcomes.correct holds {len(rows) if isinstance(rows, list) else 'no'} rates, the curve "
                         f"{len(curve)}")
    if stored["encoding"] == ENCODING:
        packed = (count + 7) // 8
        bits = [np.unpackbits(np.frombuffer(_decode(row, packed, f"outcomes.correct[{index}]"), dtype=np.uint8),
                              count=count) for index, row in enumerate(rows)]
        return np.stack(bits).astype(np.int64), np.ones(count, dtype=np.int64)
    correct = np.stack([_counts(row, count, f"outcomes.correct[{index}]") for index, row in enumerate(rows)])
    return correct, _counts(stored.get("units"), count, "outcomes.units")


def _differs(stored: Any, recomputed: Any) -> bool:
    if recomputed is None or stored is None:
        return stored is not recomputed
    if isinstance(stored, bool) or not isinstance(stored, (int, float)):
        return True
    return not math.isclose(float(stored), float(recomputed), rel_tol=RELATIVE_TOLERANCE, abs_tol=1e-12)


def _show(value: Any) -> str:
    return "absent" if value is _MISSING else repr(value)


_MISSING = object()


class Disagreement(Exception):
    """A field of a record that is not what the rest of the record makes it."""


class Unbacked(Disagreement):
    """A record without what its curve is recomputed from (its message is the whole reason)."""


def _check(field: str, stored: Any, recomputed: Any, source: str) -> None:
    if stored is _MISSING or _differs(stored, recomputed):
        raise Disagreement(f"{field} is {_show(stored)} but its {source} give {recomputed!r}")


def _probe_accuracies(data: dict[str, Any], count: int, curve: list[dict[str, Any]]) -> tuple[str, list[float]] | None:
    """The probe's name and its accuracy per rate recomputed from ``outcomes.probe``, checked against the curve's
    ``<name>_accuracy`` and ``samples.probe_predictions``; None for a record without a probe."""
    name = (data.get("samples") or {}).get("probe")
    stored = data["outcomes"].get("probe")
    if name is None and stored is None:
        return None
    if not isinstance(name, str) or not isinstance(stored, dict) or stored.get("name") != name:
        raise Disagreement("samples.probe and outcomes.probe name different probes (or only one names one)")
    try:
        units = _counts(stored.get("units"), count, "outcomes.probe.units")
        rows = stored.get("correct")
        if not isinstance(rows, list) or len(rows) != len(curve):
            raise ValueError("outcomes.probe.correct does not hold one entry per rate")
        correct = np.stack([_counts(row, count, f"outcomes.probe.correct[{i}]") for i, row in enumerate(rows)])
    except ValueError as exc:
        raise Disagreement(f"its probe outcomes are damaged ({exc})") from None
    total = int(units.sum())
    if total == 0 or np.any(correct > units):
        raise Disagreement("outcomes.probe counts more correct predictions than predictions")
    _check("samples.probe_predictions", data["samples"].get("probe_predictions", _MISSING), total, "probe outcomes")
    accuracies = [float(row.sum() / total) for row in correct]
    for index, (point, accuracy) in enumerate(zip(curve, accuracies)):
        _check(f"curve[{index}].{name}_accuracy (rate {point['rate']:g})", point.get(f"{name}_accuracy", _MISSING),
               accuracy, "probe outcomes")
    return name, accuracies


def _check_counts(data: dict[str, Any]) -> tuple[list[int], int]:
    """The curve's counts against the outcomes; returns the counts and the predictions per rate."""
    stored, curve, samples = data.get("outcomes"), data["curve"], data["samples"]
    if not isinstance(stored, dict) or stored.get("encoding") not in (ENCODING, COUNTS_ENCODING):
        raise Unbacked("it has no per-sample outcomes, so nothing backs its curve (made by an older pxp-bench, "
                       "or edited); rerun it with this version.")
    count = stored.get("samples")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise Disagreement(f"outcomes.samples is {count!r}, not a count of samples")
    _check("samples.evaluation", samples.get("evaluation", _MISSING), count, "outcomes")
    if samples.get("evaluation_hash") != stored.get("evaluation_hash"):
        raise Disagreement(f"outcomes.evaluation_hash is {stored.get('evaluation_hash')!r} but samples.evaluation_hash "
                           f"is {samples.get('evaluation_hash')!r}")
    try:
        _decode(stored.get("labels"), count * np.dtype(LABELS_DTYPE).itemsize, "outcomes.labels")
        correct, units = _per_rate(stored, count, curve)
    except ValueError as exc:
        raise Disagreement(f"its outcomes are damaged ({exc})") from None
    if np.any(units < 1) or np.any(correct > units):
        raise Disagreement("its outcomes count more correct predictions than a sample makes")
    total = int(units.sum())
    counts = [int(row.sum()) for row in correct]
    for index, (point, hits) in enumerate(zip(curve, counts)):
        where = f"curve[{index}] (rate {point['rate']:g})"
        _check(f"{where}.correct", point.get("correct", _MISSING), hits, "outcomes")
        if "total" in point or stored["encoding"] == COUNTS_ENCODING:
            _check(f"{where}.total", point.get("total", _MISSING), total, "outcomes")
        _check(f"{where}.accuracy", point.get("accuracy", _MISSING), hits / total, "outcomes")
        if isinstance(point.get("pruned"), bool) or not isinstance(point.get("pruned"), int) or point["pruned"] < 0:
            raise Disagreement(f"{where}.pruned is {point.get('pruned')!r}, not a count of components")
    return counts, total


def _check_layers(data: dict[str, Any]) -> dict[str, list[float]]:
    layers, rates = data.get("layers"), data["rates"]
    if not isinstance(layers, dict):
        raise Disagreement("layers is not a mapping of layer names to pruned fractions")
    for name, fractions in layers.items():
        if (not isinstance(fractions, list) or len(fractions) != len(rates)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in fractions)):
            raise Disagreement(f"layers.{name} is not one pruned fraction (0 to 1) per rate")
    return layers


def _check_efficiency(curve: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The curve's efficiency figures (slimmed runs: every point has parameters and FLOPs), or None."""
    if not all("parameters" in point and "flops" in point for point in curve):
        return None
    for index, point in enumerate(curve):
        for key, value in point.items():
            if key not in CURVE_KEYS and not key.endswith("_accuracy") and (
                    isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0):
                raise Disagreement(f"curve[{index}].{key} is {value!r}, not a measurement")
    return curve


def recomputation_problem(data: dict[str, Any]) -> str | None:
    """Why ``data`` (a record whose fields have the types `pxp_bench.records.fields` needs) disagrees with
    itself, naming the first field that does; None when outcomes, curve and metrics agree."""
    try:
        counts, total = _check_counts(data)
        curve, rates = data["curve"], data["rates"]
        probe = _probe_accuracies(data, data["outcomes"]["samples"], curve)
        perplexities = [point.get("perplexity") for point in curve]
        if any(value is not None for value in perplexities) and not all(
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 for value in perplexities):
            raise Disagreement("the curve's perplexities are not positive numbers at every rate")
        metrics = record_metrics(rates, counts, total, layers=_check_layers(data), efficiency=_check_efficiency(curve),
                                 perplexities=perplexities if perplexities[0] is not None else None, probe=probe)
        stored = data["metrics"]
        for key, value in metrics.items():
            _check(f"metrics.{key}", stored.get(key, _MISSING), value, "curve and outcomes")
        extra = sorted(set(stored) - set(metrics))
        if extra:
            raise Disagreement(f"metrics.{extra[0]} is not a metric this record's curve gives")
    except Unbacked as unbacked:
        return str(unbacked)
    except Disagreement as disagreement:
        return f"{disagreement}: the record was edited or damaged after it was written; rerun it."
    return None

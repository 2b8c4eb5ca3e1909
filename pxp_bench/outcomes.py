"""Per-sample outcomes: which evaluation samples a pruned model still classifies correctly, at each rate.

A record keeps them bit-packed (``numpy.packbits``, base64 in the JSON: ImageNet's 50,000 images x 20
rates are 125 KB of bits), with each sample's class position (for the stratified bootstrap) and the
evaluation indices' hash (two records are paired only when it is equal). Every interval, paired rank
and comparison of `pxp_bench.verdicts` is computed from them; older records without them still load.

A sample that makes several predictions (a sequence of a language model: L - 1 next tokens) keeps its
count of correct predictions instead of a bit (``counts-base64``, uint16) and its number of predictions
(``units``); its outcome is then the fraction correct, so a resample of sequences is a cluster bootstrap
over tokens, and the mean over sequences of equal length is the token accuracy.

A dataset's probe (`pxp_bench.specs.Probe`, the corpus' copied bytes) adds ``probe``: its name, each
sample's probe predictions (``units``) and per rate each sample's correct ones (``correct``), as counts; the
probe's accuracy at a rate is their ratio of sums, so its intervals come from the same bootstrap.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

ENCODING = "packbits-base64"
COUNTS_ENCODING = "counts-base64"
COUNTS_DTYPE = "<u2"
LABELS_DTYPE = "<u2"
"""Class positions (0..classes-1, in the record's class order) as little-endian uint16: up to 65,536
classes."""


def pack(correct: np.ndarray) -> str:
    """A boolean vector as base64 of its packed bits."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack(text: str, count: int) -> np.ndarray:
    """The boolean vector of ``count`` samples that `pack` wrote."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=count)
    return bits.astype(bool)


@dataclass(frozen=True)
class ProbeOutcomes:
    """A probe's per-sample counts: ``correct[rate, sample]`` of ``units[sample]`` probe predictions."""

    name: str
    correct: np.ndarray
    units: np.ndarray


@dataclass(frozen=True)
class Outcomes:
    """One record's per-sample outcomes: ``correct[rate, sample]`` (0 / 1, or the fraction of a sample's
    predictions that are correct), each sample's class position, and the probe's counts where it has one."""

    correct: np.ndarray
    labels: np.ndarray
    evaluation_hash: str
    probe: ProbeOutcomes | None = None

    @property
    def per_sample(self) -> np.ndarray:
        """Each sample's fraction of the grid's rates at which it is classified correctly: their mean is
        A_PR."""
        return self.correct.mean(axis=0)


def _encoded(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.asarray(values).astype(dtype).tobytes()).decode("ascii")


def _counts(values: np.ndarray) -> str:
    if int(np.max(values, initial=0)) >= 2**16:
        raise ValueError("a sample makes more predictions than the outcome counts hold (65,535)")
    return _encoded(values, COUNTS_DTYPE)


def outcomes_record(correct: Sequence[np.ndarray], labels: np.ndarray, evaluation_hash: str,
                    units: np.ndarray | None = None, probe: ProbeOutcomes | None = None) -> dict[str, Any]:
    """The JSON form of the outcomes of a curve: one packed vector per rate, in the curve's order (counts
    and each sample's ``units`` where a sample makes more than one prediction), and the ``probe``'s counts."""
    labels = np.asarray(labels)
    record = {
        "encoding": ENCODING,
        "samples": int(len(labels)),
        "evaluation_hash": evaluation_hash,
        "labels": _encoded(labels, LABELS_DTYPE),
    }
    if probe is not None:
        record["probe"] = {"name": probe.name, "units": _counts(probe.units),
                           "correct": [_counts(vector) for vector in probe.correct]}
    if units is None or bool(np.all(np.asarray(units) == 1)):
        return {**record, "correct": [pack(vector) for vector in correct]}
    return {**record, "encoding": COUNTS_ENCODING, "units": _counts(units),
            "correct": [_counts(vector) for vector in correct]}


def _decoded(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).astype(np.int64)


def read_outcomes(record: dict[str, Any]) -> Outcomes | None:
    """The outcomes of a stored result, or None for a record without (usable) outcomes.

    A record whose outcomes disagree with its own curve (another count of correct samples at a rate) is
    treated as having none: an interval must never be drawn from bits that are not the curve's.
    """
    stored = record.get("outcomes")
    if not isinstance(stored, dict) or stored.get("encoding") not in (ENCODING, COUNTS_ENCODING):
        return None
    try:
        count = int(stored["samples"])
        labels = _decoded(stored["labels"], LABELS_DTYPE)
        if stored["encoding"] == ENCODING:
            correct, units = np.stack([unpack(text, count) for text in stored["correct"]]), np.ones(count)
        else:
            correct = np.stack([_decoded(text, COUNTS_DTYPE) for text in stored["correct"]])
            units = _decoded(stored["units"], COUNTS_DTYPE)
    except (KeyError, TypeError, ValueError):
        return None
    curve = record.get("curve") or []
    if len(labels) != count or len(units) != count or correct.shape[-1] != count or not np.all(units > 0) \
            or len(correct) != len(curve) or any(int(row.sum()) != point.get("correct")
                                                 for row, point in zip(correct, curve)):
        return None
    fractions = correct if stored["encoding"] == ENCODING else correct / units
    probe = _read_probe(stored.get("probe"), (record.get("samples") or {}).get("probe"), count, curve)
    return Outcomes(fractions, labels, str(stored.get("evaluation_hash")), probe)


def _read_probe(stored: Any, name: Any, count: int, curve: list[dict[str, Any]]) -> ProbeOutcomes | None:
    """The counts of the record's probe ``name`` (``samples.probe``), or None where there are none or they
    disagree with the curve's ``<name>_accuracy`` (the rest of the outcomes stays usable)."""
    if not isinstance(stored, dict) or not isinstance(name, str) or stored.get("name") != name:
        return None
    try:
        units = _decoded(stored["units"], COUNTS_DTYPE)
        correct = np.stack([_decoded(text, COUNTS_DTYPE) for text in stored["correct"]])
        recorded = np.array([point[f"{name}_accuracy"] for point in curve], dtype=float)
    except (KeyError, TypeError, ValueError):
        return None
    total = int(units.sum())
    if len(units) != count or correct.shape != (len(curve), count) or total == 0 or np.any(correct > units) \
            or not np.all(np.abs(correct.sum(axis=1) / total - recorded) <= 1e-12):  # NaN fails too
        return None
    return ProbeOutcomes(name, correct, units)

"""Per-sample outcomes: which evaluation samples a pruned model still classifies correctly, at each rate.

A record keeps them bit-packed (``numpy.packbits``, base64 in the JSON: ImageNet's 50,000 images x 20
rates are 125 KB of bits), with each sample's class position (for the stratified bootstrap) and the
evaluation indices' hash (two records are paired only when it is equal). Every interval, paired rank
and comparison of `pxp_bench.verdicts` is computed from them; older records without them still load.

A sample that makes several predictions (a sequence of a language model: L - 1 next tokens) keeps its
count of correct predictions instead of a bit (``counts-base64``, uint16) and its number of predictions
(``units``); its outcome is then the fraction correct, so a resample of sequences is a cluster bootstrap
over tokens, and the mean over sequences of equal length is the token accuracy.
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
class Outcomes:
    """One record's per-sample outcomes: ``correct[rate, sample]`` (0 / 1, or the fraction of a sample's
    predictions that are correct) and each sample's class position."""

    correct: np.ndarray
    labels: np.ndarray
    evaluation_hash: str

    @property
    def per_sample(self) -> np.ndarray:
        """Each sample's fraction of the grid's rates at which it is classified correctly: their mean is
        A_PR."""
        return self.correct.mean(axis=0)


def _encoded(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.asarray(values).astype(dtype).tobytes()).decode("ascii")


def outcomes_record(correct: Sequence[np.ndarray], labels: np.ndarray, evaluation_hash: str,
                    units: np.ndarray | None = None) -> dict[str, Any]:
    """The JSON form of the outcomes of a curve: one packed vector per rate, in the curve's order (counts
    and each sample's ``units`` where a sample makes more than one prediction)."""
    labels = np.asarray(labels)
    record = {
        "encoding": ENCODING,
        "samples": int(len(labels)),
        "evaluation_hash": evaluation_hash,
        "labels": _encoded(labels, LABELS_DTYPE),
    }
    if units is None or bool(np.all(np.asarray(units) == 1)):
        return {**record, "correct": [pack(vector) for vector in correct]}
    if int(np.max(units)) >= 2**16:
        raise ValueError("a sample makes more predictions than the outcome counts hold (65,535)")
    return {**record, "encoding": COUNTS_ENCODING, "units": _encoded(units, COUNTS_DTYPE),
            "correct": [_encoded(vector, COUNTS_DTYPE) for vector in correct]}


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
    return Outcomes(fractions, labels, str(stored.get("evaluation_hash")))

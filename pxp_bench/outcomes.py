"""Per-sample outcomes: which evaluation samples a pruned model still classifies correctly, at each rate.

A record keeps them bit-packed (``numpy.packbits``, base64 in the JSON: ImageNet's 50,000 images x 20
rates are 125 KB of bits), with each sample's class position (for the stratified bootstrap) and the
evaluation indices' hash (two records are paired only when it is equal). Every interval, paired rank
and comparison of `pxp_bench.verdicts` is computed from them; older records without them still load.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

ENCODING = "packbits-base64"
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
    """One record's per-sample outcomes: ``correct[rate, sample]`` and each sample's class position."""

    correct: np.ndarray
    labels: np.ndarray
    evaluation_hash: str

    @property
    def per_sample(self) -> np.ndarray:
        """Each sample's fraction of the grid's rates at which it is classified correctly: their mean is
        A_PR."""
        return self.correct.mean(axis=0)


def outcomes_record(correct: Sequence[np.ndarray], labels: np.ndarray, evaluation_hash: str) -> dict[str, Any]:
    """The JSON form of the outcomes of a curve: one packed vector per rate, in the curve's order."""
    labels = np.asarray(labels)
    return {
        "encoding": ENCODING,
        "samples": int(len(labels)),
        "evaluation_hash": evaluation_hash,
        "labels": base64.b64encode(labels.astype(LABELS_DTYPE).tobytes()).decode("ascii"),
        "correct": [pack(vector) for vector in correct],
    }


def read_outcomes(record: dict[str, Any]) -> Outcomes | None:
    """The outcomes of a stored result, or None for a record without (usable) outcomes.

    A record whose outcomes disagree with its own curve (another count of correct samples at a rate) is
    treated as having none: an interval must never be drawn from bits that are not the curve's.
    """
    stored = record.get("outcomes")
    if not isinstance(stored, dict) or stored.get("encoding") != ENCODING:
        return None
    try:
        count = int(stored["samples"])
        labels = np.frombuffer(base64.b64decode(stored["labels"]), dtype=LABELS_DTYPE).astype(np.int64)
        correct = np.stack([unpack(text, count) for text in stored["correct"]])
    except (KeyError, TypeError, ValueError):
        return None
    curve = record.get("curve") or []
    if len(labels) != count or len(correct) != len(curve) or any(
            int(row.sum()) != point.get("correct") for row, point in zip(correct, curve)):
        return None
    return Outcomes(correct, labels, str(stored.get("evaluation_hash")))

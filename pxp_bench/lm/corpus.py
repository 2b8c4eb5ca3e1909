"""A generated ASCII corpus for the embedded language model, with a copy pattern whose positions are known.

The text is generated here, not collected: it is our own and dedicated to the public domain (CC0), so the
corpus, and models trained on it, can be redistributed freely. Each sequence is ``length`` bytes of

* pseudo-words (``"kamo tefi ..."``) from a fixed vocabulary of lowercase consonant-vowel words, drawn with
  Zipfian frequencies and chained by a bigram grammar (each word has three successors, taken 60/30/10 %),
  so most bytes are predictable from the preceding ones; and
* exactly one copy segment ``[s|s]``: ``s`` is 6 to 10 distinct random lowercase letters, repeated after the
  marker ``|``. The first ``s`` is noise; the second is predictable only by looking back at the first
  (induction), which is what `copy_positions` marks and "copy accuracy" scores.

The vocabulary and grammar are fixed (their own seed); a sample's seed only chooses the text. Sampling uses
its own `numpy.random.Generator`, never global state.
"""

from __future__ import annotations

import bisect
import functools
import re
from typing import NamedTuple

import numpy as np
import torch

from pxp_bench.errors import ConfigError
from pxp_bench.specs import Probe

LETTERS = b"abcdefghijklmnopqrstuvwxyz"
OPEN, MARKER, CLOSE = b"[", b"|", b"]"
COPY_LENGTHS = (6, 10)
"""Shortest and longest copied string (inclusive)."""
COPY_SEGMENT = re.compile(rb"\[([a-z]+)\|")
"""A copy segment's source and marker: the ``len(source)`` bytes after the marker repeat the source."""
MIN_LENGTH = 2 * COPY_LENGTHS[1] + 3
"""The shortest sequence that holds the longest copy segment ``[s|s]``."""
VOCABULARY_SIZE = 64
VOCABULARY_SEED = 1729
"""Seeds the language (words, frequencies, grammar), which no sample seed changes."""
SUCCESSOR_SHARES = [0.6, 0.9, 1.0]
"""Running sums of the chances of a word's first, second and third successor."""
CONSONANTS, VOWELS = b"bdfgklmnprstvz", b"aeiou"


class CorpusSplits(NamedTuple):
    train: torch.Tensor
    tune: torch.Tensor
    eval: torch.Tensor


class _Language(NamedTuple):
    words: tuple[bytes, ...]
    frequencies: list[float]  # cumulative Zipf shares of the words, rank 1 first
    successors: list[list[int]]  # for each word, the three words that may follow it, most likely first


def _draw(rng: np.random.Generator, cumulative: list[float]) -> int:
    """An index drawn with the shares whose running sums are ``cumulative`` (plain lists: this is hot)."""
    return min(bisect.bisect_right(cumulative, rng.random()), len(cumulative) - 1)


@functools.cache
def _language() -> _Language:
    """The fixed vocabulary (1 to 3 consonant-vowel syllables, all distinct) and bigram grammar."""
    rng = np.random.default_rng(VOCABULARY_SEED)
    words: list[bytes] = []
    while len(words) < VOCABULARY_SIZE:
        word = bytearray()
        for _ in range(int(rng.integers(1, 4))):
            word += bytes([CONSONANTS[rng.integers(len(CONSONANTS))], VOWELS[rng.integers(len(VOWELS))]])
        if bytes(word) not in words:
            words.append(bytes(word))
    zipf = 1.0 / np.arange(1, VOCABULARY_SIZE + 1)
    frequencies = np.cumsum(zipf / zipf.sum()).tolist()
    successors = []
    for _ in range(VOCABULARY_SIZE):
        chosen: list[int] = []
        while len(chosen) < len(SUCCESSOR_SHARES):
            candidate = _draw(rng, frequencies)
            if candidate not in chosen:
                chosen.append(candidate)
        successors.append(chosen)
    return _Language(tuple(words), frequencies, successors)


def _words(rng: np.random.Generator, at_least: int) -> bytes:
    """Grammatical pseudo-word text of ``at_least`` bytes or more, each word followed by a space."""
    language = _language()
    text = bytearray()
    word = _draw(rng, language.frequencies)
    while len(text) < at_least:
        text += language.words[word] + b" "
        word = language.successors[word][_draw(rng, SUCCESSOR_SHARES)]
    return bytes(text)


def _sequence(rng: np.random.Generator, length: int) -> bytes:
    """Words, then one copy segment at a random offset, then words; cut to ``length`` bytes."""
    size = int(rng.integers(COPY_LENGTHS[0], COPY_LENGTHS[1] + 1))
    source = bytes(LETTERS[i] for i in rng.permutation(len(LETTERS))[:size])
    segment = OPEN + source + MARKER + source + CLOSE
    start = int(rng.integers(0, length - len(segment) + 1))
    before = _words(rng, start)
    before = before[len(before) - start:]  # the stream's tail: it may open mid-word, and ends with a space
    text = before + segment + b" "
    return (text + _words(rng, length - len(text)))[:length]


def generate_sequences(n: int, *, length: int = 64, seed: int | np.random.SeedSequence) -> torch.Tensor:
    """``n`` sequences of ``length`` ASCII bytes, shape (n, length), the same for the same seed."""
    if length < MIN_LENGTH:
        raise ConfigError(f"corpus sequences must be at least {MIN_LENGTH} bytes long, got {length}.")
    rng = np.random.default_rng(seed)
    rows = [np.frombuffer(_sequence(rng, length), dtype=np.uint8) for _ in range(n)]
    return torch.from_numpy(np.stack(rows).astype(np.int64)) if rows else torch.zeros(0, length, dtype=torch.long)


def copy_positions(sequences: torch.Tensor) -> torch.Tensor:
    """True at positions ``t`` whose next byte (``t + 1``) is a copied byte: from a copy segment's marker up
    to the byte before the copy's last, found by parsing the bytes (so any sequence can be scored)."""
    sequences = torch.as_tensor(sequences)
    mask = torch.zeros(sequences.shape, dtype=torch.bool)
    last = sequences.shape[-1] - 1  # the last position has no next byte
    rows = sequences.detach().cpu().clamp(0, 255).to(torch.uint8).numpy()  # ids past a byte match nothing
    for row, sequence in enumerate(rows):
        for found in COPY_SEGMENT.finditer(sequence.tobytes()):
            marker = found.end() - 1
            mask[row, marker:min(marker + len(found.group(1)), last)] = True
    return mask


COPY_PROBE = Probe("copy", copy_positions)
"""Copy accuracy: next-byte accuracy on the copied bytes, recorded per rate beside the whole's."""


def corpus_splits(seed: int = 0, *, length: int = 64, n_train: int = 8192, n_tune: int = 256,
                  n_eval: int = 512) -> CorpusSplits:
    """Train, tune and eval sequences from three independent streams of one seed (`SeedSequence.spawn`)."""
    train, tune, evaluation = np.random.SeedSequence(seed).spawn(3)
    return CorpusSplits(generate_sequences(n_train, length=length, seed=train),
                        generate_sequences(n_tune, length=length, seed=tune),
                        generate_sequences(n_eval, length=length, seed=evaluation))


def bigram_accuracy(train: torch.Tensor, sequences: torch.Tensor) -> float:
    """Next-byte top-1 accuracy of the most frequent successor of each byte in ``train``: the baseline a
    language model must clearly beat."""
    counts = torch.zeros(256, 256, dtype=torch.long)
    counts.index_put_((train[:, :-1].reshape(-1), train[:, 1:].reshape(-1)),
                      torch.ones(train[:, 1:].numel(), dtype=torch.long), accumulate=True)
    predicted = counts.argmax(dim=1)[sequences[:, :-1]]
    return (predicted == sequences[:, 1:]).float().mean().item()

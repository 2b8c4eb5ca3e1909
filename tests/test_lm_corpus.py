"""The generated corpus, the byte tokenizer and the embedded tiny Llama (training, manifest, packaged copy)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from pxp_bench.errors import ConfigError
from pxp_bench.lm.corpus import MIN_LENGTH, bigram_accuracy, copy_positions, corpus_splits, generate_sequences
from pxp_bench.lm.embedded import (
    EMBEDDED_LM,
    SEQUENCE_LENGTH,
    build_embedded,
    evaluate_lm,
    next_token_accuracy,
    perplexity,
    train_embedded_lm,
)
from pxp_bench.lm.tokenizer import ByteTokenizer
from pxp_bench.models.checkpoints import file_sha256
from pxp_bench.models.zoo import packaged_checkpoint


@pytest.fixture(scope="module")
def splits():
    return corpus_splits(0, length=SEQUENCE_LENGTH)


def test_generation_is_deterministic_per_seed_and_differs_across_seeds():
    first = generate_sequences(64, seed=3)
    assert torch.equal(first, generate_sequences(64, seed=3))
    assert not torch.equal(first, generate_sequences(64, seed=4))


@pytest.mark.parametrize("length", [MIN_LENGTH, 64, 100])
def test_sequences_have_the_requested_length_and_are_printable_ascii(length):
    sequences = generate_sequences(200, length=length, seed=1)
    assert sequences.shape == (200, length) and sequences.dtype == torch.long
    assert ((sequences >= 32) & (sequences < 127)).all()
    with pytest.raises(ConfigError, match="at least"):
        generate_sequences(1, length=MIN_LENGTH - 1, seed=1)


def test_copy_positions_mark_exactly_the_bytes_the_copy_segment_predicts():
    sequences = generate_sequences(300, seed=7)
    marked = copy_positions(sequences)
    for row, mask in zip(sequences, marked):
        text = bytes(row.tolist())
        (segment,) = re.finditer(rb"\[([a-z]+)\|([a-z]+)\]", text)  # one whole segment per sequence
        source, copy = segment.group(1), segment.group(2)
        assert source == copy and 6 <= len(source) <= 10 and len(set(source)) == len(source)
        marker = segment.start(2) - 1
        expected = set(range(marker, marker + len(source)))
        assert set(torch.nonzero(mask).flatten().tolist()) == expected
        assert all(text[t + 1] == source[t - marker] for t in expected)


def test_copy_positions_parse_any_bytes():
    tokens = torch.tensor([list(b"ab [xyz|xyz] c"), list(b"no copy here..")])
    assert torch.nonzero(copy_positions(tokens)).tolist() == [[0, 7], [0, 8], [0, 9]]
    cut = torch.tensor([list(b"ab [xyz|xy")])  # a copy running past the end marks what has a next byte
    assert torch.nonzero(copy_positions(cut)).tolist() == [[0, 7], [0, 8]]


def test_splits_are_disjoint(splits):
    rows = [{bytes(row.tolist()) for row in split} for split in splits]
    assert [len(r) for r in rows] == [len(split) for split in splits]  # no duplicates inside a split either
    assert not rows[0] & rows[1] and not rows[0] & rows[2] and not rows[1] & rows[2]
    assert torch.equal(corpus_splits(0).eval, splits.eval)


def test_byte_tokenizer_round_trip():
    tokenizer = ByteTokenizer()
    text = "kamo [abc|abc] - grüß"
    ids = tokenizer.encode(text)
    assert tokenizer.vocab_size == 256 and all(0 <= i < 256 for i in ids) and len(ids) == len(text.encode())
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(ids[:-1]).endswith("\ufffd")  # a cut multi-byte character is replaced, not raised


def test_training_writes_a_verified_checkpoint_and_refuses_to_overwrite(tmp_path):
    steps = []
    trained = train_embedded_lm(tmp_path, steps=3, seed=5, on_step=lambda step, loss: steps.append((step, loss)))
    assert [step for step, _ in steps] == [1, 2, 3] and all(loss > 0 for _, loss in steps)
    manifest = json.loads(trained.manifest.read_text())
    assert trained.checkpoint == tmp_path / f"{EMBEDDED_LM}.safetensors"
    assert manifest["sha256"] == file_sha256(trained.checkpoint) == trained.sha256
    assert manifest["steps"] == 3 and manifest["seed"] == 5 and manifest["model"] == EMBEDDED_LM
    assert manifest["eval_accuracy"] == pytest.approx(trained.eval_accuracy, abs=1e-6)
    before = trained.checkpoint.read_bytes()
    with pytest.raises(ConfigError, match="--force"):
        train_embedded_lm(tmp_path, steps=3, seed=6)
    assert trained.checkpoint.read_bytes() == before
    with pytest.raises(ConfigError, match="--steps"):
        train_embedded_lm(tmp_path / "other", steps=0)


def test_packaged_model_reproduces_its_manifest_and_beats_the_bigram_baseline(splits):
    checkpoint = packaged_checkpoint(EMBEDDED_LM)
    manifest = json.loads(checkpoint.with_suffix(".json").read_text())
    assert manifest["sha256"] == file_sha256(checkpoint)
    model = build_embedded(checkpoint)
    assert not model.training and model.config._attn_implementation == "eager"
    scores = evaluate_lm(model, splits.eval)
    assert scores.accuracy == pytest.approx(manifest["eval_accuracy"], abs=1e-4)
    assert scores.copy_accuracy == pytest.approx(manifest["eval_copy_accuracy"], abs=1e-3)
    assert scores.perplexity == pytest.approx(manifest["eval_perplexity"], rel=1e-3)
    assert scores.copy_accuracy > 0.9 and scores.accuracy > bigram_accuracy(splits.train, splits.eval) + 0.2
    few = splits.eval[:64]  # the single metrics agree with the one-pass evaluation
    assert next_token_accuracy(model, few) == evaluate_lm(model, few).accuracy
    assert next_token_accuracy(model, few, copy_positions(few)) == evaluate_lm(model, few).copy_accuracy
    assert perplexity(model, few) == pytest.approx(evaluate_lm(model, few).perplexity, rel=1e-9)

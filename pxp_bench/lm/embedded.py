"""The embedded language model: a tiny Llama trained offline, deterministically, on the generated corpus.

``tiny-llama`` is a `transformers.LlamaForCausalLM` (rotary positions, grouped-query attention, gated MLP)
over bytes (`ByteTokenizer`), small enough to train in minutes on two CPU cores and to prune in seconds.
Its corpus (`pxp_bench.lm.corpus`) holds a copy segment in every sequence, so besides next-token accuracy
it is scored on copy accuracy, which only induction heads provide: pruning them visibly breaks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from pxp_bench.errors import ConfigError
from pxp_bench.lm.builtin import EMBEDDED_LM
from pxp_bench.lm.corpus import copy_positions, corpus_splits
from pxp_bench.lm.tokenizer import ByteTokenizer
from pxp_bench.models.checkpoints import apply_state_dict, load_state_dict
from pxp_bench.models.training import TrainedCheckpoint, checkpoint_target, write_checkpoint
from pxp_bench.seeds import check_seed
from pxp_bench.results import ensure_writable_dir

SEQUENCE_LENGTH = 64
DEFAULT_STEPS = 2000
DEFAULT_SEED = 0
CORPUS_SEED = 0
"""The corpus is the same for every training seed, so eval scores of different runs compare."""
BATCH_SIZE = 32
LEARNING_RATE = 3e-3
WARMUP_STEPS = 100
EVAL_BATCH_SIZE = 256


def embedded_config() -> LlamaConfig:
    """2 layers of 4 query heads sharing 2 key/value heads (head size 16), hidden 64, gated MLP of 192."""
    return LlamaConfig(
        vocab_size=ByteTokenizer.vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=SEQUENCE_LENGTH,
        rope_theta=10000.0,
        attention_bias=False,
        attention_dropout=0.0,
        mlp_bias=False,
        tie_word_embeddings=False,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_embedded(weights: Path | None = None) -> LlamaForCausalLM:
    """The model in eval mode with eager attention (its weights visible to hooks), loaded from the
    safetensors file (or state dict) ``weights`` when given, else freshly initialised."""
    config = embedded_config()
    config._attn_implementation = "eager"
    model = LlamaForCausalLM(config)
    if weights is not None:
        apply_state_dict(model, load_state_dict(Path(weights)), Path(weights), EMBEDDED_LM)
    return model.eval()


@torch.no_grad()
def _predict(model: torch.nn.Module, sequences: torch.Tensor) -> tuple[torch.Tensor, float]:
    """One pass: which bytes t+1 the model predicts top-1 from bytes 0..t, shape (n, length - 1), and the
    summed cross-entropy of those predictions."""
    device = next(model.parameters()).device
    hits, loss = [], 0.0
    for batch in sequences.split(EVAL_BATCH_SIZE):
        batch = batch.to(device)
        logits, targets = model(input_ids=batch).logits[:, :-1].float(), batch[:, 1:]
        hits.append((logits.argmax(-1) == targets).cpu())
        loss += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
    return torch.cat(hits), loss


def _accuracy(hits: torch.Tensor, positions: torch.Tensor | None) -> float:
    scored = torch.ones_like(hits) if positions is None else positions[:, :-1].cpu()
    counted = int(scored.sum())
    return float(hits[scored].sum()) / counted if counted else math.nan


def next_token_accuracy(model: torch.nn.Module, sequences: torch.Tensor,
                        positions: torch.Tensor | None = None) -> float:
    """Top-1 accuracy of predicting byte t+1 from bytes 0..t, over positions 0..length-2 or, given a
    (n, length) bool mask ``positions``, over those only (`copy_positions` gives copy accuracy)."""
    return _accuracy(_predict(model, sequences)[0], positions)


def perplexity(model: torch.nn.Module, sequences: torch.Tensor) -> float:
    """exp of the mean next-token cross-entropy over positions 0..length-2."""
    return math.exp(_predict(model, sequences)[1] / sequences[:, 1:].numel())


@dataclass(frozen=True)
class LMScores:
    """A language model's scores on a set of sequences (see `evaluate_lm`)."""

    accuracy: float
    copy_accuracy: float
    perplexity: float


def evaluate_lm(model: torch.nn.Module, sequences: torch.Tensor) -> LMScores:
    """Next-token accuracy, copy accuracy and perplexity of ``model`` on ``sequences``, in one pass."""
    hits, loss = _predict(model, sequences)
    return LMScores(_accuracy(hits, None), _accuracy(hits, copy_positions(sequences)),
                    math.exp(loss / hits.numel()))


def _warmup_cosine(step: int, steps: int) -> float:
    """The learning-rate factor: a linear warmup, then a cosine decay to zero."""
    warmup = max(1, min(WARMUP_STEPS, steps // 10))
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train_embedded_lm(
    out_dir: Path,
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = DEFAULT_SEED,
    command: str = "",
    force: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainedCheckpoint:
    """Train ``tiny-llama`` on the corpus' train split; write ``tiny-llama.safetensors`` + manifest, replacing
    earlier ones only with ``force`` (checked before training, so a refusal costs nothing). ``on_step``
    receives each step's number and training loss."""
    if steps < 1:
        raise ConfigError(f"--steps must be at least 1, got {steps}.")
    check_seed(seed)
    checkpoint = checkpoint_target(out_dir, EMBEDDED_LM, force)
    ensure_writable_dir(Path(out_dir))
    splits = corpus_splits(CORPUS_SEED, length=SEQUENCE_LENGTH)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = build_embedded().train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.98), weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _warmup_cosine(step, steps))
        for step in range(steps):
            batch = splits.train[torch.randint(len(splits.train), (BATCH_SIZE,), generator=generator)]
            logits = model(input_ids=batch).logits[:, :-1]
            loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            if on_step is not None:
                on_step(step + 1, loss.item())
    finally:
        torch.use_deterministic_algorithms(deterministic)
    model.eval()
    scores = evaluate_lm(model, splits.eval)
    return write_checkpoint(model, checkpoint, scores.accuracy, {
        "eval_accuracy": round(scores.accuracy, 6),
        "eval_copy_accuracy": round(scores.copy_accuracy, 6),
        "eval_perplexity": round(scores.perplexity, 6),
        "dataset": "generated corpus (pxp_bench.lm.corpus)",
        "trained_on": "train split",
        "steps": steps,
        "seed": seed,
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": command or f"pxp-bench zoo train {EMBEDDED_LM} --steps {steps} --seed {seed}",
    })


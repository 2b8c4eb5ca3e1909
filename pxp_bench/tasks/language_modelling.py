"""Language modelling (PROTOCOL section 12): next-token top-1 accuracy and perplexity on held-out sequences.

A sample is one token sequence of fixed length L; it makes L - 1 predictions (token t + 1 from tokens
0..t). The target output a method explains is the sum over positions of the logit of the true next
token: LRP starts from a logit (lxt's examples explain a logit, never a log-probability, whose softmax
normaliser would spread relevance over the whole vocabulary), and summing over positions explains the
whole sequence as accuracy scores it. There are no classes: every sequence is in one stratum.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pxp_bench.data.protocol import ProtocolSets, seed_streams
from pxp_bench.errors import ConfigError
from pxp_bench.specs import DatasetSplits, Probe
from pxp_bench.tasks.base import BatchOutcome

TEXT_CLASS = 0
"""The one "class" of a language-modelling dataset: every label's stratum."""


def _draw(size: int, count: int, rng: np.random.Generator, *, split: str, option: str,
          exclude: frozenset[int] = frozenset()) -> list[int]:
    pool = [index for index in range(size) if index not in exclude]
    if len(pool) < count:
        raise ConfigError(f"the {split} split has {len(pool)} available sequences, fewer than {option} {count}. "
                          f"Lower {option}, or give the dataset more text (or a shorter sequence length).")
    return sorted(int(i) for i in rng.choice(pool, size=count, replace=False))


class LanguageModelling:
    """Reference and tuning sequences are drawn (``--ref-per-class`` / ``--tune-per-class`` count sequences:
    text is one class); the evaluation set is every sequence of the evaluation split."""

    name = "language_modelling"

    def draw(self, splits: DatasetSplits, *, n_classes: int | None, ref_per_class: int, tune_per_class: int,
             seed: int) -> ProtocolSets:
        if n_classes not in (None, 1):
            raise ConfigError("--classes does not apply to language modelling (text has no classes); drop it.")
        if ref_per_class < 1:
            raise ConfigError(f"--ref-per-class must be at least 1, got {ref_per_class}.")
        if tune_per_class < 0:
            raise ConfigError(f"--tune-per-class must be 0 or more, got {tune_per_class}.")
        streams = seed_streams(seed)
        reference = _draw(len(splits.train), ref_per_class, streams["reference"], split="train",
                          option="--ref-per-class")
        if splits.tune is not None:
            tuning_split, size, exclude = "tune", len(splits.tune), frozenset()
        else:
            tuning_split, size, exclude = "train", len(splits.train), frozenset(reference)
        tuning = _draw(size, tune_per_class, streams["tuning"], split=tuning_split, option="--tune-per-class",
                       exclude=exclude) if tune_per_class else []
        return ProtocolSets([TEXT_CLASS], reference, tuning, tuning_split, list(range(len(splits.eval))))

    def outcome(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                class_ids: torch.Tensor, probe: Probe | None = None) -> BatchOutcome:
        logits = model(inputs)[:, :-1]
        following = labels[:, 1:]
        correct = logits.argmax(dim=-1) == following
        hits = correct.sum(dim=1)
        nll = F.cross_entropy(logits.float().transpose(1, 2), following, reduction="none").sum(dim=1)
        units = torch.full_like(hits, following.shape[1])
        probed = {}
        if probe is not None:
            marked = probe.positions(labels)[:, :-1].to(correct.device)
            probed = {"probe_hits": (correct & marked).sum(dim=1), "probe_units": marked.sum(dim=1)}
        return BatchOutcome(hits, units, torch.full_like(hits, TEXT_CLASS), nll, **probed)

    def target_outputs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits[:, :-1].gather(-1, targets[:, 1:, None]).squeeze(-1).sum(dim=1)

    def log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets[:, 1:], reduction="none").sum(dim=1)

    def output_scale(self, logits: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return logits[:, :-1].abs().amax(dim=-1).sum(dim=1)

    def continuous_inputs(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return model.embed(inputs)


LANGUAGE_MODELLING_TASK = LanguageModelling()

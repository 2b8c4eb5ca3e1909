"""The contract of a task kind (`Task`) and what it returns for one evaluated batch (`BatchOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from pxp_bench.data.protocol import ProtocolSets
    from pxp_bench.specs import DatasetSplits


@dataclass(frozen=True)
class BatchOutcome:
    """One evaluated batch, per sample: ``hits`` correct predictions out of ``units`` predictions.

    Counts, not ratios, so Top-PR's 95 % compares exactly. ``strata`` are the samples' classes for the
    stratified bootstrap (`pxp_bench.verdicts`), ``nll`` the summed negative log-likelihood of the units
    where the task has one (perplexity), else None.
    """

    hits: torch.Tensor
    units: torch.Tensor
    strata: torch.Tensor
    nll: torch.Tensor | None = None
    probe_hits: torch.Tensor | None = None
    """Per sample, the correct predictions among the `Probe`'s, where the dataset has a probe."""
    probe_units: torch.Tensor | None = None
    """Per sample, the predictions the `Probe` marks."""


class Task(Protocol):
    """What a task kind implements (`pxp_bench.tasks.classification` is the reference)."""

    name: str

    def draw(self, splits: DatasetSplits, *, n_classes: int | None, ref_per_class: int, tune_per_class: int,
             seed: int) -> ProtocolSets:
        """The run's classes and its reference, tuning and evaluation samples (seeded)."""

    def outcome(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                class_ids: torch.Tensor) -> BatchOutcome:
        """One batch's forward pass and its per-sample outcome. A task whose datasets have a `Probe` also
        takes ``probe=`` (passed only when there is one) and fills ``probe_hits`` / ``probe_units``."""

    def target_outputs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per sample, the model output a method explains (differentiable): ``(batch,)``."""

    def log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Per sample, the log-likelihood of the true outputs (minus the task's loss): ``(batch,)``."""

    def output_scale(self, logits: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        """Per sample, the size of the outputs the target is compared with (``init=one`` skips a sample whose
        target is near zero against it): ``(batch,)``."""

    def continuous_inputs(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Inputs a path method may scale and add noise to (images as they are, token ids embedded)."""

"""Image classification: top-1 over the run's classes, the target output the true class's logit."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pxp_bench.data.protocol import ProtocolSets, draw_sets
from pxp_bench.specs import DatasetSplits
from pxp_bench.tasks.base import BatchOutcome


class Classification:
    """PROTOCOL sections 1 and 4: classes drawn, samples per class, logits restricted to the run's classes."""

    name = "classification"

    def draw(self, splits: DatasetSplits, *, n_classes: int | None, ref_per_class: int, tune_per_class: int,
             seed: int) -> ProtocolSets:
        return draw_sets(splits, n_classes=n_classes, ref_per_class=ref_per_class, tune_per_class=tune_per_class,
                         seed=seed)

    def outcome(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                class_ids: torch.Tensor) -> BatchOutcome:
        logits = model(inputs)[:, class_ids]  # PROTOCOL section 1's domain restriction
        hits = (class_ids[logits.argmax(dim=1)] == labels).long()
        return BatchOutcome(hits, torch.ones_like(hits), labels)

    def target_outputs(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return logits.gather(1, targets[:, None]).squeeze(1)

    def log_likelihood(self, logits: torch.Tensor, targets: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        positions = (targets[:, None] == class_ids[None, :]).int().argmax(dim=1)
        return -F.cross_entropy(logits[:, class_ids], positions, reduction="none")

    def output_scale(self, logits: torch.Tensor, class_ids: torch.Tensor) -> torch.Tensor:
        return logits[:, class_ids].abs().amax(dim=1)

    def continuous_inputs(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return inputs


CLASSIFICATION_TASK = Classification()

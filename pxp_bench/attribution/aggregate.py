"""Per-sample component relevances -> one score per component (PROTOCOL section 3's aggregation).

Also the ``init`` rule: relevances that carry the target logit (Gradient x Input, lxt's AttnLRP) are
divided by it for ``init=one``, skipping samples whose logit is too close to zero to divide by.
"""

from __future__ import annotations

from typing import Sequence

import torch

from pxp_bench.components import Components
from pxp_bench.errors import ConfigError
from pxp_bench.tasks.base import Task
from pxp_bench.tasks.classification import CLASSIFICATION_TASK

NEAR_ZERO_LOGIT = 0.01
"""``init=one`` skips a sample whose |true-class logit| is below this fraction of its largest |logit|
over the run's classes: dividing by it would let one sample outweigh all the others."""


def init_weights(logits: torch.Tensor, targets: torch.Tensor, class_ids: Sequence[int], init: str,
                 task: Task = CLASSIFICATION_TASK) -> torch.Tensor | None:
    """Per-sample factors that turn logit-carrying relevances into ``init``'s; 0 marks a skipped sample.

    ``logits`` are the model's full logits, ``targets`` original class ids (token ids for language
    modelling, ``task``). None for ``init=logit`` (nothing to change). The rule is per sample, so scores
    do not depend on the batch size.
    """
    if init == "logit":
        return None
    logits = logits.detach()
    target = task.target_outputs(logits, targets)
    scale = task.output_scale(logits, torch.as_tensor(list(class_ids), device=logits.device))
    usable = target.abs() >= NEAR_ZERO_LOGIT * scale
    usable &= target != 0
    return torch.where(usable, 1.0 / torch.where(usable, target, torch.ones_like(target)), torch.zeros_like(target))


class RelevanceAggregator:
    """Accumulates ``r_i(c)`` on the device.

    ``abs`` -> mean_i |r_i(c)|; ``abs_per_position`` -> the same over relevances whose absolute value
    was taken per position (`SiteTensors.per_sample` with ``absolute=True``: ask `per_position`);
    ``signed`` -> mean_i r_i(c). ``normalize='layer'`` divides each layer's scores by their sum of
    absolute values (Yeom et al.). Samples with weight 0 (see `init_weights`) are skipped and counted
    in ``diagnostics['near_zero_logits_skipped']``.
    """

    def __init__(self, components: Components, aggregation: str = "abs", normalize: str = "none",
                 diagnostics: dict | None = None) -> None:
        self.components = components
        self.aggregation = aggregation
        self.normalize = normalize
        self.diagnostics = diagnostics if diagnostics is not None else {}
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._skipped = 0

    @property
    def per_position(self) -> bool:
        """Whether per-sample relevances must be absolute per position before the sum over positions."""
        return self.aggregation == "abs_per_position"

    def add(self, relevances: dict[str, torch.Tensor], weights: torch.Tensor | None = None) -> None:
        """Add one batch: ``{group: (batch, size)}`` per-sample relevances, optionally weighted."""
        batch = None
        for name, relevance in relevances.items():
            batch = relevance.shape[0]
            value = relevance.detach()
            if weights is not None:
                value = value * weights[:, None].to(value.dtype)
            if self.aggregation != "signed":
                value = value.abs()
            total = value.sum(dim=0, dtype=torch.float64)
            self._sums[name] = self._sums[name] + total if name in self._sums else total
        skipped = 0 if weights is None else int((weights == 0).sum())
        self._skipped += skipped
        self._count += (batch or 0) - skipped
        self.diagnostics["near_zero_logits_skipped"] = self._skipped

    def scores(self) -> dict[str, torch.Tensor]:
        """The aggregated scores, float32 on the CPU, one 1-D tensor per group."""
        if self._count == 0:
            if self._skipped:
                raise ConfigError(
                    f"all {self._skipped} reference samples have a true-class logit near zero, so init=one "
                    "cannot divide by it. Use --param init=logit."
                )
            raise ValueError("no relevances were added")
        scores = {}
        for group in self.components.groups:
            score = self._sums[group.name] / self._count
            if self.normalize == "layer":
                score = score / score.abs().sum().clamp_min(torch.finfo(torch.float64).tiny)
            scores[group.name] = score.float().cpu()
        return scores

"""Per-sample component relevances -> one score per component (PROTOCOL section 3's aggregation)."""

from __future__ import annotations

import torch

from pxp_bench.components import Components


class RelevanceAggregator:
    """Accumulates ``r_i(c)`` on the device: ``abs`` -> mean |r|, ``signed`` -> mean r.

    ``normalize='layer'`` divides each layer's scores by their sum of absolute values (Yeom et al.).
    """

    def __init__(self, components: Components, aggregation: str = "abs", normalize: str = "none") -> None:
        self.components = components
        self.aggregation = aggregation
        self.normalize = normalize
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, relevances: dict[str, torch.Tensor]) -> None:
        """Add one batch: ``{group: (batch, size)}`` per-sample relevances."""
        batch = None
        for name, relevance in relevances.items():
            batch = relevance.shape[0]
            value = relevance.detach().abs() if self.aggregation == "abs" else relevance.detach()
            total = value.sum(dim=0, dtype=torch.float64)
            self._sums[name] = self._sums[name] + total if name in self._sums else total
        self._count += batch or 0

    def scores(self) -> dict[str, torch.Tensor]:
        """The aggregated scores, float32 on the CPU, one 1-D tensor per group."""
        if self._count == 0:
            raise ValueError("no relevances were added")
        scores = {}
        for group in self.components.groups:
            score = self._sums[group.name] / self._count
            if self.normalize == "layer":
                score = score / score.abs().sum().clamp_min(torch.finfo(torch.float64).tiny)
            scores[group.name] = score.float().cpu()
        return scores

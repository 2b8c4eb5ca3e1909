"""Which components each rate prunes, under a schedule and a scope (`pxp_bench.conditions`).

The paper's one-shot, global ranking is `pxp_bench.masking.rank_components` (a prefix of one order per
rate). Here the pruned sets of the other choices, still nested along the grid and so still one order
with a count per rate (`PruningOrder`), which the curve, its memo and the slimmed copy read unchanged:
- ``scope="layer"``: every layer gives up the same fraction, ``floor(rate * size)`` of its own (at most its
  ``max_layer_rate`` share), its least relevant first: the uniform layer-wise baseline of the pruning
  literature, beside the paper's global ranking;
- ``schedule="iterative"``: before each rate the model, masked at the previous rate's set, is scored again
  (same method, parameters and reference samples), and the set grows to the rate's from the new scores
  (the pruned stay pruned). The first rate that prunes anything uses the unpruned model's scores, so a
  one-rate grid is the one-shot result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from pxp_bench.components import Components
from pxp_bench.guards import check_scores
from pxp_bench.masking import keep_masks, pruned_count

Rescore = Callable[[Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]
"""Scores of the model with the given keep-masks applied (the pruned components removed)."""


@dataclass(frozen=True)
class PruningOrder:
    """The components in the order they are pruned, and how many of them each rate prunes."""

    order: torch.Tensor
    counts: tuple[int, ...]
    rescore_seconds: list[float] = field(default_factory=list)
    """Per rate, the seconds its re-scoring took (0 where it needed none): iterative only."""


def _layer_of(components: Components) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(components.groups)),
                                   torch.tensor([group.size for group in components.groups]))


def _flat(components: Components, scores: Mapping[str, torch.Tensor]) -> torch.Tensor:
    check_scores(components, scores)
    return torch.cat([scores[g.name].detach().flatten().double().cpu() for g in components.groups])


def _caps(components: Components, max_layer_rate: float | None) -> torch.Tensor:
    sizes = torch.tensor([group.size for group in components.groups])
    return sizes if max_layer_rate is None else torch.floor(sizes.double() * max_layer_rate + 1e-9).long()


def layer_targets(components: Components, rate: float, max_layer_rate: float | None) -> torch.Tensor:
    """Per layer, how many components ``rate`` prunes under the per-layer scope (within the cap)."""
    sizes = torch.tensor([group.size for group in components.groups])
    return torch.minimum(torch.tensor([pruned_count(rate, int(size)) for size in sizes]),
                         _caps(components, max_layer_rate))


def _extend(components: Components, pruned: torch.Tensor, flat: torch.Tensor, rate: float, scope: str,
            max_layer_rate: float | None) -> torch.Tensor:
    """The components to add to ``pruned`` (a boolean per component) to reach ``rate``, least relevant by
    ``flat`` first (ties in the stable (layer, channel) order)."""
    layer_of = _layer_of(components)
    candidates = torch.sort(flat, stable=True).indices
    candidates = candidates[~pruned[candidates]]
    taken = torch.bincount(layer_of[pruned], minlength=len(components.groups))
    limit = layer_targets(components, rate, max_layer_rate) if scope == "layer" else _caps(components, max_layer_rate)
    within = torch.zeros_like(candidates)  # each candidate's place among its layer's candidates
    for layer in range(len(components.groups)):
        chosen = layer_of[candidates] == layer
        within[chosen] = torch.arange(int(chosen.sum()))
    allowed = candidates[taken[layer_of[candidates]] + within < limit[layer_of[candidates]]]
    if scope == "layer":
        return allowed
    return allowed[:max(0, pruned_count(rate, components.total) - int(pruned.sum()))]


def pruning_order(components: Components, rates: Sequence[float], scores: Mapping[str, torch.Tensor], *,
                  scope: str, max_layer_rate: float | None = None, rescore: Rescore | None = None) -> PruningOrder:
    """The nested pruned sets of ``rates`` (ascending) from ``scores`` (the unpruned model's) under ``scope``;
    with ``rescore``, the iterative schedule (scored again on the pruned model before each rate that grows
    a set scored before)."""
    pruned = torch.zeros(components.total, dtype=torch.bool)
    flat = _flat(components, scores)
    scored_at = 0  # how many were pruned when ``flat`` was scored
    steps: list[torch.Tensor] = []
    counts: list[int] = []
    seconds: list[float] = []
    for rate in rates:
        elapsed = 0.0
        if rescore is not None and int(pruned.sum()) != scored_at:
            clock = time.perf_counter()
            order_so_far = torch.cat(steps)
            flat = _flat(components, rescore(keep_masks(components, order_so_far, len(order_so_far))))
            elapsed = time.perf_counter() - clock
            scored_at = int(pruned.sum())
        added = _extend(components, pruned, flat, rate, scope, max_layer_rate)
        pruned[added] = True
        steps.append(added)
        counts.append(int(pruned.sum()))
        seconds.append(round(elapsed, 4))
    return PruningOrder(torch.cat(steps), tuple(counts), seconds if rescore is not None else [])

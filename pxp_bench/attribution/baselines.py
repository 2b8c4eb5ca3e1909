"""Data-free scores: ``random`` (the baseline) and ``magnitude`` (mean |w| per component)."""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.attribution.reference import ReferenceSet
from pxp_bench.components import Components


def random_scores(model: nn.Module, components: Components, reference: ReferenceSet) -> dict[str, torch.Tensor]:
    """Uniform scores drawn from the run's ``random_baseline`` stream."""
    generator = torch.Generator().manual_seed(reference.seed)
    flat = torch.rand(components.total, generator=generator)
    return dict(zip(components.names, flat.split([g.size for g in components.groups])))


def magnitude_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, normalize: str = "none"
) -> dict[str, torch.Tensor]:
    """Mean |w| of each component's producing weights (mean, so layers of any fan-in compare)."""
    modules = dict(model.named_modules())
    scores = {}
    for group in components.groups:
        weight = modules[group.name].weight.detach()
        score = weight.abs().flatten(1).mean(dim=1).double()
        if normalize == "layer":
            score = score / score.sum().clamp_min(torch.finfo(torch.float64).tiny)
        scores[group.name] = score.float().cpu()
    return scores

"""Data-free scores: ``random`` (the baseline) and ``magnitude`` (mean |w| per component)."""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import Components
from pxp_bench.lm.architecture import producing_weights as lm_producing_weights


def random_scores(model: nn.Module, components: Components, reference: ReferenceSet,
                  context: RunContext) -> dict[str, torch.Tensor]:
    """Uniform scores drawn from the run's ``random_baseline`` stream."""
    flat = torch.rand(components.total, generator=context.generator("random_baseline"))
    return dict(zip(components.names, flat.split([g.size for g in components.groups])))


def producing_weights(module: nn.Module, size: int) -> torch.Tensor:
    """(components, ...) weights; attention's packed q/k/v rows are regrouped per head (LM heads and neurons:
    `pxp_bench.lm.architecture.producing_weights`)."""
    if (lm_weights := lm_producing_weights(module)) is not None:
        return lm_weights
    if isinstance(module, nn.MultiheadAttention):
        packed = module.in_proj_weight
    elif hasattr(module, "qkv"):
        packed = module.qkv.weight
    else:
        return module.weight.detach()
    q_k_v = packed.detach().view(3, size, -1, packed.shape[-1])  # (q/k/v, head, head_dim, in)
    return q_k_v.transpose(0, 1)


def magnitude_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    normalize: str = "none"
) -> dict[str, torch.Tensor]:
    """Mean |w| of each component's producing weights (mean, so layers of any fan-in compare):
    a filter's kernel, a neuron's row of its Linear, a head's rows of the q, k and v projections."""
    modules = dict(model.named_modules())
    scores = {}
    for group in components.groups:
        score = producing_weights(modules[group.name], group.size).abs().flatten(1).mean(dim=1).double()
        if normalize == "layer":
            score = score / score.sum().clamp_min(torch.finfo(torch.float64).tiny)
        scores[group.name] = score.float().cpu()
    return scores

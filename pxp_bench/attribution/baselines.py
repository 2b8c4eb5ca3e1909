"""Data-free scores: ``random`` (the baseline) and ``magnitude`` (mean |w| per component)."""

from __future__ import annotations

from typing import Callable

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
    """The weights that produce the ``size`` components of a group's producing module (``group.name``), one
    row per component: a filter's kernel, a neuron's row of its Linear, a head's q/k/v rows (attention's
    packed projection regrouped per head; LM heads and neurons: `pxp_bench.lm.architecture.producing_weights`)."""
    return producing_weights_of(module, size, torch.Tensor.detach)


def producing_weights_of(module: nn.Module, size: int, of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``of(weight)`` for each weight `producing_weights` reads, regrouped the same way: ``(size, ...)``, one
    row per component. ``of`` returns a tensor of the weight's shape: ``lambda w: w.grad * w`` gives each
    component's gradient x weight terms, so that one criterion scores filters, neurons and heads alike."""

    def regrouped(weight: torch.Tensor) -> torch.Tensor:
        value = of(weight)
        if not isinstance(value, torch.Tensor) or value.shape != weight.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"producing_weights_of: `of` returned {got} for a weight of shape "
                             f"{tuple(weight.shape)}; return a tensor of the weight's shape (a weight without a "
                             "gradient has .grad None).")
        return value

    if (lm_weights := lm_producing_weights(module, regrouped)) is not None:
        return lm_weights
    if isinstance(module, nn.MultiheadAttention):
        packed = module.in_proj_weight
    elif hasattr(module, "qkv"):
        packed = module.qkv.weight
    else:
        return regrouped(module.weight)
    q_k_v = regrouped(packed).reshape(3, size, -1, packed.shape[-1])  # (q/k/v, head, head_dim, in)
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

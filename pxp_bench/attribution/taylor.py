"""First-order Taylor scores (Molchanov et al.): ``r_i(c) = sum_pos a * dy/da`` at each reference sample."""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.attribution.aggregate import RelevanceAggregator
from pxp_bench.attribution.capture import captured_sites
from pxp_bench.attribution.reference import ReferenceSet
from pxp_bench.components import Components


def taylor_scores(
    model: nn.Module,
    components: Components,
    reference: ReferenceSet,
    aggregation: str = "abs",
    normalize: str = "none",
) -> dict[str, torch.Tensor]:
    """Gradient x activation at every component's site, the target being the true-class logit."""
    aggregator = RelevanceAggregator(components, aggregation, normalize)
    with captured_sites(model, components) as sites, torch.enable_grad():
        for inputs, targets in reference.batches():
            sites.clear()
            logits = model(inputs.requires_grad_(True))
            target_logit = logits.gather(1, targets[:, None]).sum()
            activations = sites.flat()
            gradients = torch.autograd.grad(target_logit, activations)
            aggregator.add(sites.per_sample([a * g for a, g in zip(activations, gradients)]))
    return aggregator.scores()

"""LRP for CNNs on zennit, with the paper's layer-group composites (PROTOCOL section 3).

Conv layers are split into depth groups by forward-execution order: ``low`` = the first ceil(L/4),
``high`` = the last ceil(L/4), ``mid`` = the rest; every Linear layer is in ``fc``. Each group gets one
rule from {epsilon, gamma, zplus, alpha2beta1}. Canonizers come from the model's dataflow, not its
layer names: each BatchNorm is merged into the conv / Linear whose output it consumes (zennit's
NamedMergeBatchNorm with the pairs found by component discovery), torchvision residual blocks get
zennit's residual canonizers (the sum split proportionally), activations, pooling and sums get
zennit's base rules. Everything is undone when scoring returns (``composite.context``).

zennit is LGPL-3.0; pxp-bench imports it unmodified.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from pxp_bench.attention import attention_modules
from pxp_bench.attribution.aggregate import RelevanceAggregator
from pxp_bench.attribution.capture import captured_sites
from pxp_bench.attribution.lrp_rules import depth_groups, rule_for
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import Components, find_components
from pxp_bench.lm.model import is_causal_lm


def _residual_canonizers(model: nn.Module) -> list:
    from torchvision.models.resnet import BasicBlock, Bottleneck
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    canonizers = []
    if any(isinstance(m, BasicBlock) for m in model.modules()):
        canonizers.append(ResNetBasicBlockCanonizer())
    if any(isinstance(m, Bottleneck) for m in model.modules()):
        canonizers.append(ResNetBottleneckCanonizer())
    return canonizers


def build_composite(
    model: nn.Module, example: torch.Tensor, rules: dict[str, str], *,
    epsilon: float = 1e-6, gamma_conv: float = 0.25, gamma_linear: float = 0.05,
):
    """The zennit composite for ``model``: one rule per depth group, canonizers from dataflow."""
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.composites import NameLayerMapComposite, layer_map_base

    # in execution order, with their BatchNorms; a model without any finds none, a failure raises
    convs = list(find_components(model, "filters", example).groups)
    hidden_linears = list(find_components(model, "neurons", example).groups)
    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    groups = {**depth_groups([g.name for g in convs]), "fc": linear_names}
    parameters = dict(epsilon=epsilon, gamma_conv=gamma_conv, gamma_linear=gamma_linear)
    name_map = [
        (tuple(names), rule_for(rules[group], linear=group == "fc", **parameters))
        for group, names in groups.items() if names
    ]
    pairs = [((g.name,), g.site) for g in convs + hidden_linears if g.site != g.name]
    merged = {bn for _, bn in pairs}
    loose = [name for name, module in model.named_modules()
             if isinstance(module, nn.modules.batchnorm._BatchNorm) and name not in merged]
    if loose:
        warnings.warn(
            f"BatchNorm modules {', '.join(loose)} do not directly consume a conv or Linear output, so "
            "they cannot be merged; LRP passes relevance through them unchanged.",
            stacklevel=3,
        )
    canonizers = ([NamedMergeBatchNorm(pairs)] if pairs else []) + _residual_canonizers(model)
    return NameLayerMapComposite(name_map=name_map, layer_map=layer_map_base(), canonizers=canonizers)


def count_unsplit_sums(output: torch.Tensor) -> int:
    """Additions of two graph tensors in ``output``'s autograd graph (residual sums, typically).

    After canonization torchvision's residual sums run through zennit's ``Sum`` module, which LRP splits
    proportionally; an ``add`` left in the graph passes the full relevance to both summands.
    """
    seen: set = set()
    stack = [output.grad_fn]
    count = 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        parents = [parent for parent, _ in node.next_functions if parent is not None]
        if node.name() in ("AddBackward0", "SubBackward0") and len(parents) >= 2:
            count += 1
        stack.extend(parents)
    return count


def lrp_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    low: str = "epsilon", mid: str = "epsilon", high: str = "epsilon", fc: str = "epsilon",
    epsilon: float = 1e-6, gamma_conv: float = 0.25, gamma_linear: float = 0.05,
    aggregation: str = "abs", normalize: str = "none", init: str = "one", attention: str = "attnlrp",
) -> dict[str, torch.Tensor]:
    """Relevance at each component's site under the group composite, aggregated over the samples.

    Models with attention modules go to the transformer backend (`attnlrp_scores`, lxt); ``attention``
    is its rule inside attention and is ignored for CNNs.

    zennit computes relevance as a modified gradient: seeding the output gradient with the one-hot of
    the true class is ``init=one``; seeding it with one-hot x logit is ``init=logit``. The modified
    gradient at a tensor *is* its relevance.
    """
    if attention_modules(model) or is_causal_lm(model):
        from pxp_bench.attribution.attnlrp import attnlrp_scores

        return attnlrp_scores(model, components, reference, context, low=low, mid=mid, high=high, fc=fc,
                              attention=attention, epsilon=epsilon, gamma_linear=gamma_linear,
                              aggregation=aggregation, normalize=normalize, init=init)
    example = next(iter(reference.dataset))[0].unsqueeze(0).to(reference.device)
    composite = build_composite(model, example, {"low": low, "mid": mid, "high": high, "fc": fc},
                                epsilon=epsilon, gamma_conv=gamma_conv, gamma_linear=gamma_linear)
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    # the composite registers first, so the site capture sees the canonized model's outputs
    with composite.context(model), captured_sites(model, components) as sites, torch.enable_grad():
        for index, (inputs, targets) in enumerate(context.track(reference.batches())):
            sites.clear()
            logits = model(inputs.detach().requires_grad_(True))
            if index == 0 and (sums := count_unsplit_sums(logits)):
                warnings.warn(
                    f"the model adds tensors {sums} time(s) outside blocks zennit can canonize (e.g. residual "
                    "sums of non-torchvision blocks); LRP passes the full relevance to both summands there, "
                    "so relevance is not conserved across those additions.",
                    stacklevel=2,
                )
            seed = torch.zeros_like(logits).scatter_(1, targets[:, None], 1.0)
            if init == "logit":
                seed = seed * logits.detach()
            relevances = torch.autograd.grad(logits, sites.flat(), grad_outputs=seed)
            aggregator.add(sites.per_sample(list(relevances), aggregator.per_position))
    return aggregator.scores()

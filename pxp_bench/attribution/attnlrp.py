"""LRP for transformers: AttnLRP / CP-LRP through lxt's Gradient x Input rules (PROTOCOL section 3).

Inside `lxt_rules`, LayerNorms and GELUs follow lxt's identity rule and zennit's rule hooks work in
the Gradient x Input framework (lxt's ``monkey_patch_zennit``); attention is computed explicitly with
the chosen attention rule (`pxp_bench.attention`). The relevance at a tensor is then a * dL/da, and
seeding the true class with gradient 1 makes the output carry its logit (``init=logit``); ``init=one``
divides each sample's relevances by its logit.

Depth groups run over the transformer blocks (the modules holding an attention module) in execution
order; each group's rule applies to the Linear layers inside its blocks, ``fc`` to the Linear layers
outside any block (the classifier head). The patch embedding lies below every component, so its rule
cannot change component scores and it gets none. torchvision packs q, k and v into one parameter that
is not a module, so on torchvision ViTs the q/k/v projection always propagates as epsilon (plain
Gradient x Input); timm's ``qkv`` Linear follows its group's rule.

lxt is BSD-3-Clause, but its authors state that LRP is patented and free only for personal and
scientific use. lxt patches classes globally; every patch here is undone when scoring returns.

Decoder LMs (`pxp_bench.lm`) take lxt's efficient rules for their architecture (`pxp_bench.lm.lxt_rules`);
their depth groups run over the decoder layers and ``fc`` is the LM head; the target output is the summed
logits of the true next tokens (`pxp_bench.tasks.language_modelling`).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator

import torch
from torch import nn

from pxp_bench.attention import attention_modules, explicit_attention
from pxp_bench.attribution.aggregate import RelevanceAggregator, init_weights
from pxp_bench.attribution.capture import captured_sites
from pxp_bench.attribution.lrp_rules import depth_groups, rule_for
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import GELU_NAMES, Components
from pxp_bench.errors import ComponentError
from pxp_bench.lm.architecture import decoder_blocks
from pxp_bench.lm.lxt_rules import lxt_lm_rules
from pxp_bench.lm.model import is_causal_lm
from pxp_bench.patching import patched_attributes

LAST_AXIS_NORMS = {"timm.layers.norm.LayerNorm", "timm.layers.norm.LayerNormFp32"}
"""LayerNorm subclasses with their own forward that still normalise the last axis, like lxt's rule."""


def _lxt_layer_norm(cls: type) -> bool:
    """Whether lxt's LayerNorm rule (it normalises the last axis) computes what ``cls`` computes."""
    return cls.forward is nn.LayerNorm.forward or f"{cls.__module__}.{cls.__qualname__}" in LAST_AXIS_NORMS


@contextmanager
def lxt_rules(model: nn.Module) -> Iterator[None]:
    """lxt's identity rules on the model's LayerNorm and GELU classes, and lxt's Gradient x Input
    version of zennit's ``BasicHook``; all restored on exit.

    A LayerNorm subclass that normalises another axis (timm's channel-first ``LayerNorm2d``) is
    refused: lxt's rule would silently compute a different function.
    """
    from lxt.efficient.patches import layer_norm_forward, non_linear_forward

    classes = {type(module) for module in model.modules()}
    other_norms = sorted(cls.__name__ for cls in classes if issubclass(cls, nn.LayerNorm) and not _lxt_layer_norm(cls))
    if other_norms:
        raise ComponentError(
            f"LRP for transformers (lxt) cannot handle the model's {', '.join(other_norms)}: lxt's LayerNorm "
            "rule normalises the last axis, these norms normalise another one. Use another --method "
            "(taylor, ig, smoothgrad, magnitude) for this model."
        )
    changes = _gradient_x_input_changes()
    for cls in classes:
        if issubclass(cls, nn.LayerNorm):
            changes.append((cls, "forward", layer_norm_forward))
        elif issubclass(cls, nn.GELU) or cls.__name__ in GELU_NAMES:
            changes += [(cls, "original_forward", cls.forward), (cls, "forward", non_linear_forward)]
    with patched_attributes(changes):
        yield


def _gradient_x_input_changes() -> list[tuple[type, str, object]]:
    from lxt.efficient.zennit_patches import backward as gi_backward
    from lxt.efficient.zennit_patches import forward as gi_forward
    from zennit.core import BasicHook

    return [(BasicHook, "forward", gi_forward), (BasicHook, "backward", gi_backward)]


@contextmanager
def gradient_x_input_hooks() -> Iterator[None]:
    """zennit's rule hooks in lxt's Gradient x Input form only (language models: lxt's own patches handle
    their norms and activations, `pxp_bench.lm.lxt_rules`)."""
    with patched_attributes(_gradient_x_input_changes()):
        yield


def _block_names(model: nn.Module) -> list[str]:
    """The blocks: parents of the attention modules, in the model's order."""
    return [name.rpartition(".")[0] for name, _ in attention_modules(model)]


def transformer_composite(model: nn.Module, rules: dict[str, str], *, epsilon: float, gamma_linear: float):
    from zennit.composites import NameMapComposite

    blocks = decoder_blocks(model) if is_causal_lm(model) else _block_names(model)
    group_of_block = {block: group for group, names in depth_groups(blocks).items() for block in names}
    names: dict[str, list[str]] = {group: [] for group in ("low", "mid", "high", "fc")}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":  # GPT-2's Linear, transposed
            block = next((b for b in blocks if name.startswith(b + ".")), None)
            names[group_of_block[block] if block is not None else "fc"].append(name)
    name_map = [(tuple(members), rule_for(rules[group], linear=True, epsilon=epsilon, gamma_conv=0.0,
                                          gamma_linear=gamma_linear))
                for group, members in names.items() if members]
    return NameMapComposite(name_map=name_map)


def attnlrp_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext, *,
    low: str, mid: str, high: str, fc: str, attention: str, epsilon: float, gamma_linear: float,
    aggregation: str, normalize: str, init: str,
) -> dict[str, torch.Tensor]:
    """Relevance (a * modified gradient) at each component's site, aggregated over the samples."""
    composite = transformer_composite(model, {"low": low, "mid": mid, "high": high, "fc": fc},
                                      epsilon=epsilon, gamma_linear=gamma_linear)
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    with ExitStack() as stack:
        if is_causal_lm(model):  # lxt's efficient rules for the architecture; its attention is eager already
            stack.enter_context(gradient_x_input_hooks())
            stack.enter_context(lxt_lm_rules(model.lm, attention))
        else:
            stack.enter_context(lxt_rules(model))
            stack.enter_context(explicit_attention(model, rule=attention))
        stack.enter_context(composite.context(model))
        sites = stack.enter_context(captured_sites(model, components))
        stack.enter_context(torch.enable_grad())
        for inputs, targets in context.track(reference.batches()):
            sites.clear()
            logits = model(inputs.detach().requires_grad_(inputs.is_floating_point()))
            target_logits = reference.target_outputs(logits, targets)
            activations = sites.flat()
            gradients = torch.autograd.grad(target_logits.sum(), activations)
            relevances = sites.per_sample([a.detach() * g for a, g in zip(activations, gradients)],
                                          aggregator.per_position)
            aggregator.add(relevances, init_weights(logits, targets, reference.class_ids, init, reference.task))
    return aggregator.scores()

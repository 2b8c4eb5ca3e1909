"""Wanda-style structured importance (Sun et al., 2023, "A Simple and Effective Pruning Approach for LLMs"),
summed per unit: a filter or neuron weighs sum_j |W_cj| * ||X_j||^exponent, where X_j is the input
feature j of the unit's layer over every reference sample and position. ``exponent=0`` ignores the data
(a sum-of-|W| magnitude score); ``exponent=1`` is Wanda's |W| * ||X||.

Wanda compares weights only within a comparison group (each output row of a layer) and prunes every
layer to the same sparsity; it never ranks one layer's weights against another's. ``compare="layer"``
(the default) does the same with units: a unit's score is its rank within its layer as a fraction of the
layer's size, so pxp-bench's global ranking removes the same share of every layer. ``compare="global"``
ranks the raw sums across layers instead: those grow with a layer's fan-in and its input's scale, so a
global ranking then empties the layers with the smallest sums first (on the digits CNNs, the first conv
at 5-10 %), which is not Wanda.

Units that live in a layer's *input* (a language model's heads and MLP neurons: the columns of the output
or down projection that read them, pxp-bench's ``at_input`` groups) weigh sum_i |W_ic| * ||X_c|| over the
rows i of that layer and their channels c, X its input: Wanda's score of the weights that read the unit.
"""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench import ComponentError
from pxp_bench.api import Components, ReferenceSet, RunContext, captured_sites


def _input_norms(model: nn.Module, components: Components, layers: dict[str, nn.Module], reference: ReferenceSet,
                 context: RunContext) -> dict[str, torch.Tensor]:
    """||X_j||_2 of each layer's input features over all samples and positions (the passes run inside
    `captured_sites`, under which a vision transformer's attention calls its output projection as a module)."""
    squares: dict[str, torch.Tensor] = {}

    def recorder(name: str, layer: nn.Module):
        def record(_module, args) -> None:
            x = args[0].detach().double()
            per_feature = x.pow(2).sum(dim=[d for d in range(x.dim()) if d != 1]) if isinstance(layer, nn.Conv2d) \
                else x.pow(2).flatten(0, -2).sum(dim=0)
            squares[name] = squares[name] + per_feature if name in squares else per_feature

        return record

    handles = [layer.register_forward_pre_hook(recorder(name, layer)) for name, layer in layers.items()]
    try:
        with torch.no_grad(), captured_sites(model, components) as sites:
            for inputs, _targets in context.track(reference.batches()):
                sites.clear()
                model(inputs)
    finally:  # the kit checks that no hook is left behind, also when scoring raises
        for handle in handles:
            handle.remove()
    return {name: value.sqrt() for name, value in squares.items()}


def _read_weights(layer: nn.Module) -> torch.Tensor:
    """|W| as (out, in) of a layer that reads units in its input: a Linear, or transformers' Conv1D (in, out)."""
    weight = layer.weight.detach().double().abs()
    return weight.t() if type(layer).__name__ == "Conv1D" else weight


def wanda_scores(model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
                 exponent: float = 1.0, compare: str = "layer") -> dict[str, torch.Tensor]:
    modules = dict(model.named_modules())
    groups = {group.name: group for group in components.groups}
    layers = {name: modules[group.site if group.at_input else name] for name, group in groups.items()}
    for name, layer in layers.items():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) and type(layer).__name__ != "Conv1D":
            raise ComponentError(f"wanda scores Conv2d and Linear units; '{name}' is a {type(layer).__name__}.")
    norms = _input_norms(model, components, layers, reference, context)
    scores = {}
    for name, layer in layers.items():
        scale = norms[name].pow(exponent)
        if groups[name].at_input:  # the unit's input channels, as the layer reads them
            per_channel = _read_weights(layer).sum(dim=0) * scale
            score = per_channel.view(groups[name].size, -1).sum(dim=1)
        elif isinstance(layer, nn.Conv2d):
            weight = layer.weight.detach().double().abs()  # (out, in / groups, *kernel)
            per_group = scale.view(layer.groups, -1)  # each output channel sees its group's inputs
            scale = per_group[torch.arange(weight.shape[0]) // (weight.shape[0] // layer.groups)]
            score = (weight * scale[:, :, None, None]).flatten(1).sum(dim=1)
        else:
            score = layer.weight.detach().double().abs() @ scale
        if compare == "layer":  # the within-layer rank, 1/size .. 1 (ties keep the channel order)
            ranks = torch.empty_like(score)
            ranks[torch.sort(score, stable=True).indices] = torch.arange(1, len(score) + 1, dtype=score.dtype)
            score = ranks / len(score)
        scores[name] = score.float().cpu()
    return scores

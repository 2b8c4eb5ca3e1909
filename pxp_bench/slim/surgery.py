"""A physically slimmed copy of a model that follows the pruning curve (PROTOCOL section 5b).

Torch-Pruning's dependency graph does the surgery: removing a filter removes its conv's output
channel, its BatchNorm channel and the consumers' input channels (a Linear after a flatten included);
removing a neuron removes a Linear's row and the next Linear's column. A layer is slimmed only when
its dependency group touches no other producer of components or parameters: channels coupled by a
residual sum and anything else the graph ties to other layers stay in the copy and are masked there
exactly as in the masked evaluation, so the curve is unchanged. Attention heads are removed by
`pxp_bench.slim.heads` (Torch-Pruning does not remove whole heads).
"""

from __future__ import annotations

import copy
import warnings
from typing import Mapping

import torch
from torch import nn

from pxp_bench.components import ComponentGroup, Components
from pxp_bench.slim.heads import convertible, remove_heads, slimmable


LOGIT_TOLERANCE = 1e-4
"""Slimmed and masked logits may differ by float rounding only: relative to the largest |logit|."""


def logits_agree(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Whether slimmed logits equal masked ones up to float rounding (`LOGIT_TOLERANCE`)."""
    scale = max(1.0, float(expected.abs().max()))
    return got.shape == expected.shape and float((got - expected).abs().max()) <= LOGIT_TOLERANCE * scale


def _out_pruner(module: nn.Module):
    import torch_pruning as tp

    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return tp.prune_conv_out_channels
    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    return None


def _own_parameters(target) -> bool:
    if isinstance(target, nn.Parameter):
        return True
    return isinstance(target, nn.Module) and any(True for _ in target.parameters(recurse=False))


class Slimmer:
    """A deep copy of ``model`` from which `advance` removes the pruned components it can.

    Pruned sets must grow from call to call (rates ascend, masks nest, `pxp_bench.masking.keep_masks`),
    so each call removes only what is new. The original model is never modified.
    """

    def __init__(self, model: nn.Module, components: Components, example: torch.Tensor) -> None:
        self.model = copy.deepcopy(model).eval()
        self.components = components
        self.present: dict[str, list[int]] = {}
        """For each slimmed group, the original indices of the components still in the copy."""
        if components.kind == "heads":
            self._convert_attention(example)
        else:
            self._build_graph(example)
        self.coupled = [group.name for group in components.groups if group.name not in self.present]

    def _build_graph(self, example: torch.Tensor) -> None:
        import torch_pruning as tp

        with warnings.catch_warnings(), torch.enable_grad():  # it traces with autograd; its notes on
            warnings.simplefilter("ignore")                    # unwrapped parameters (class tokens) are not ours
            self.graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=example, verbose=False)
        modules = dict(self.model.named_modules())
        for group in self.components.groups:
            if self._removable(group, modules):
                self.present[group.name] = list(range(group.size))

    def _convert_attention(self, example: torch.Tensor) -> None:
        """Put a `slimmable` module in place of each convertible attention module, if the copy then still
        computes what the original does."""
        with torch.no_grad():
            expected = self.model(example)
        originals = {}
        for group in self.components.groups:
            attention = self.model.get_submodule(group.name)
            if convertible(attention):
                originals[group.name] = attention
                self.model.set_submodule(group.name, slimmable(attention))
        try:
            with torch.no_grad():
                agree = logits_agree(self.model(example), expected)
        except Exception:  # noqa: BLE001 - the model calls its attention in a way the slim module does not support
            agree = False
        if not agree:
            for name, attention in originals.items():
                self.model.set_submodule(name, attention)
            return
        for group in self.components.groups:
            if group.name in originals:
                self.present[group.name] = list(range(group.size))

    def _removable(self, group: ComponentGroup, modules: Mapping[str, nn.Module]) -> bool:
        producer, site = modules[group.name], modules[group.site]
        pruner = _out_pruner(producer)
        if pruner is None or group.unit != 1 or group.at_input:
            return False
        dependencies = self.graph.get_pruning_group(producer, pruner, idxs=[0])
        for dependency, _ in dependencies:
            target = dependency.target.module
            if target is producer or target is site:
                continue
            pruning_outputs = getattr(dependency.handler, "__name__", "") == "prune_out_channels"
            if pruning_outputs and _own_parameters(target):
                return False  # tied to another layer's outputs (a residual sum, an embedding): stays masked
        return True

    def advance(self, keep: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Remove the newly pruned components of the slimmable groups; return the keep-masks still to
        apply to the copy (coupled groups in full, and the one channel a fully pruned layer keeps)."""
        modules = dict(self.model.named_modules())
        remaining: dict[str, torch.Tensor] = {}
        for group in self.components.groups:
            mask = keep[group.name].cpu()
            if group.name not in self.present:
                remaining[group.name] = mask
                continue
            present = self.present[group.name]
            doomed = [position for position, index in enumerate(present) if not mask[index]]
            if len(doomed) == len(present):
                doomed = doomed[1:]  # a layer keeps one channel (or head), masked: zero cannot be built
            if doomed:
                if group.at_input:
                    remove_heads(modules[group.name], doomed)
                else:
                    self.graph.get_pruning_group(modules[group.name], _out_pruner(modules[group.name]),
                                                 idxs=doomed).prune()
                dropped = set(doomed)
                present[:] = [index for position, index in enumerate(present) if position not in dropped]
            remaining[group.name] = mask[present]
        return remaining

"""A physically slimmed copy of a model that follows the pruning curve (PROTOCOL section 5b).

Torch-Pruning's dependency graph does the surgery: removing a filter removes its conv's output
channel, its BatchNorm channel and the consumers' input channels (a Linear after a flatten included);
removing a neuron removes a Linear's row and the next Linear's column. A layer is slimmed only when
its dependency group touches no other producer of components or parameters: channels coupled by a
residual sum, attention heads and anything else the graph ties to other layers stay in the copy and
are masked there exactly as in the masked evaluation, so the curve is unchanged.
"""

from __future__ import annotations

import copy
import warnings
from typing import Mapping

import torch
from torch import nn

from pxp_bench.components import ComponentGroup, Components


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
        import torch_pruning as tp

        self.model = copy.deepcopy(model).eval()
        self.components = components
        modules = dict(self.model.named_modules())
        with warnings.catch_warnings(), torch.enable_grad():  # it traces with autograd; its notes on
            warnings.simplefilter("ignore")                    # unwrapped parameters (class tokens) are not ours
            self.graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=example, verbose=False)
        self.present: dict[str, list[int]] = {}
        """For each slimmed group, the original indices of the components still in the copy."""
        for group in components.groups:
            if self._removable(group, modules):
                self.present[group.name] = list(range(group.size))
        self.coupled = [group.name for group in components.groups if group.name not in self.present]

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
                doomed = doomed[1:]  # a layer keeps one channel, masked: zero channels cannot be built
            if doomed:
                self.graph.get_pruning_group(modules[group.name], _out_pruner(modules[group.name]),
                                             idxs=doomed).prune()
                dropped = set(doomed)
                present[:] = [index for position, index in enumerate(present) if position not in dropped]
            remaining[group.name] = mask[present]
        return remaining

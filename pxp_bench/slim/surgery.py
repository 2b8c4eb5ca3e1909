"""A physically slimmed copy of a model that follows the pruning curve (PROTOCOL section 5b).

Torch-Pruning's dependency graph does the surgery: removing a filter removes its conv's output
channel, its BatchNorm channel and the consumers' input channels (a Linear after a flatten included);
removing a neuron removes a Linear's row and the next Linear's column. Layers whose channels the
graph ties together (the producers of one residual stream: a stage's stem or downsample and every
block's last conv, with their BatchNorms) form one cluster: a channel leaves the cluster's layers only
once every one of them has it pruned, for only then is the stream's channel zero everywhere; until
then it stays in the copy and is masked there exactly as in the masked evaluation, so the curve is
unchanged. A layer tied to anything that is not a component (an embedding, a parameter) stays whole.
Attention heads are removed by `pxp_bench.slim.heads` (Torch-Pruning does not remove whole heads);
a decoder LM's heads and MLP neurons by `pxp_bench.lm.slim`.
"""

from __future__ import annotations

import copy
import warnings
from typing import Mapping

import torch
from torch import nn

from pxp_bench.components import ComponentGroup, Components
from pxp_bench.lm.model import is_causal_lm
from pxp_bench.lm.slim import remove_lm_neurons
from pxp_bench.masking import masked
from pxp_bench.slim.heads import SlimSelfAttention, convertible, remove_heads, slimmable


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

    def __init__(self, model: nn.Module, components: Components, example: torch.Tensor,
                 fills: Mapping[str, torch.Tensor] | None = None) -> None:
        self.model = copy.deepcopy(model).eval()
        self.components = components
        self.example = example
        self.fills = fills
        """Under mean removal (`pxp_bench.removal`), each group's site-channel means: a channel leaves the copy
        only where its constant can be folded exactly into its consumers' biases (`_fold`)."""
        self.present: dict[str, list[int]] = {}
        """For each slimmed group, the original indices of the components still in the copy (one list
        shared by the groups of a cluster)."""
        self.clusters: list[list[str]] = []
        """Groups whose channels leave together (one group where nothing ties a layer to others)."""
        self.lm = is_causal_lm(model)
        if components.kind == "heads":
            self._convert_attention(example)
        elif self.lm:  # an LM's MLPs are cut by structure (`pxp_bench.lm.slim`), each on its own
            self.present = {group.name: list(range(group.size)) for group in components.groups}
        else:
            self._build_graph(example)
        self.clusters = self.clusters or [[name] for name in self.present]
        self.coupled = [name for cluster in self.clusters if len(cluster) > 1 for name in cluster]
        """The groups that lose a channel only when all of their cluster have it pruned."""
        self.whole = [group.name for group in components.groups if group.name not in self.present]
        """The groups that stay in full, masked."""

    def _build_graph(self, example: torch.Tensor) -> None:
        import torch_pruning as tp

        with warnings.catch_warnings(), torch.enable_grad():  # it traces with autograd; its notes on
            warnings.simplefilter("ignore")                    # unwrapped parameters (class tokens) are not ours
            self.graph = tp.DependencyGraph().build_dependency(self.model, example_inputs=example, verbose=False)
        modules = dict(self.model.named_modules())
        owners: dict[int, ComponentGroup] = {}
        """The group each layer belongs to: as its producer, else as its site."""
        for group in self.components.groups:
            owners[id(modules[group.name])] = group
        for group in self.components.groups:
            owners.setdefault(id(modules[group.site]), group)
        for group in self.components.groups:
            if group.name in self.present:
                continue
            cluster = self._cluster(group, modules, owners)
            if cluster:
                present = list(range(group.size))
                self.present.update({member: present for member in cluster})
                self.clusters.append(cluster)

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

    def _cluster(self, group: ComponentGroup, modules: Mapping[str, nn.Module],
                 owners: Mapping[int, ComponentGroup]) -> list[str] | None:
        """The groups whose output channels Torch-Pruning removes together with ``group``'s, or None when
        that would also cut a layer that is not a component's producer or site, or when a member's
        channel i is not channel i of the others (a channel leaves only when all members mask it)."""
        pruner = _out_pruner(modules[group.name])
        if pruner is None or group.unit != 1 or group.at_input:
            return None
        everything = list(range(group.size))
        cluster = [group.name]
        for dependency, indices in self.graph.get_pruning_group(modules[group.name], pruner, idxs=everything):
            target = dependency.target.module
            if getattr(dependency.handler, "__name__", "") != "prune_out_channels" or not _own_parameters(target):
                continue  # a consumer loses input channels; an activation or a sum owns nothing
            owner = owners.get(id(target))
            if owner is None or owner.unit != 1 or owner.at_input or owner.size != group.size:
                return None  # tied to an embedding, a parameter, or a layer pxp-bench does not prune
            if [getattr(index, "idx", index) for index in indices] != everything:
                return None  # tied with an offset or a permutation (a split or concatenation before a sum)
            if owner.name not in cluster:
                if _out_pruner(modules[owner.name]) is None:
                    return None
                cluster.append(owner.name)
        if len(cluster) > 1 and not all(self._masked_on_the_only_path(modules, name) for name in cluster):
            return None
        return cluster

    def _masked_on_the_only_path(self, modules: Mapping[str, nn.Module], name: str) -> bool:
        """Whether the group's producer feeds nothing but its site: a channel masked there is then zero
        wherever the producer's output goes (else, e.g. a pre-activation block adding the raw conv output,
        it is not)."""
        group = next(group for group in self.components.groups if group.name == name)
        if group.site == group.name:
            return True
        outputs = self.graph.module2node[modules[group.name]].outputs
        return [node.module for node in outputs] == [modules[group.site]]

    def advance(self, keep: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Remove the components newly pruned in every group of a cluster; return the keep-masks still
        to apply to the copy (whole groups in full, a cluster's channels that some of it still keeps, and
        the one channel a fully pruned layer keeps)."""
        modules = dict(self.model.named_modules())
        masks = {name: mask.cpu() for name, mask in keep.items()}
        for cluster in self.clusters:
            present = self.present[cluster[0]]
            doomed = [position for position, index in enumerate(present)
                      if not any(bool(masks[name][index]) for name in cluster)]
            if len(doomed) == len(present):
                doomed = doomed[1:]  # a layer keeps one channel (or head), masked: zero cannot be built
            if not doomed:
                continue
            first = modules[cluster[0]]
            if self.fills is not None and self.lm:
                continue  # a decoder LM's constants are not folded: its pruned components stay, masked
            if self.components.kind == "heads":
                if self.fills is not None:
                    self._fold_heads(first, cluster[0], doomed, present)
                doomed = remove_heads(first, doomed, present)  # grouped-query attention may keep some
            elif self.lm:
                remove_lm_neurons(first, doomed)
            else:
                pruning = self.graph.get_pruning_group(first, _out_pruner(first), idxs=doomed)
                if self.fills is not None and not self._fold(pruning, masks):
                    continue  # the constant cannot be folded exactly: the channels stay, masked with it
                pruning.prune()
            dropped = set(doomed)
            present[:] = [index for position, index in enumerate(present) if position not in dropped]
        return self.present_view(masks)

    def present_view(self, values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-component ``values`` (keep-masks) of the original model, for the components still in the copy."""
        return {group.name: values[group.name][self.present[group.name]] if group.name in self.present
                else values[group.name] for group in self.components.groups}

    def present_fills(self) -> dict[str, torch.Tensor] | None:
        """The mean-removal fills (one per site channel) for the channels still in the copy."""
        if self.fills is None:
            return None
        per_component = {group.name: self.fills[group.name].view(group.size, group.unit)
                         for group in self.components.groups}
        return {name: fill.flatten() for name, fill in self.present_view(per_component).items()}

    def _fold_heads(self, attention: nn.Module, name: str, positions: list[int], present: list[int]) -> None:
        """Add what the removed heads' constant outputs contribute to the output projection's bias (exact:
        the projection is linear in the concatenated heads)."""
        group = next(group for group in self.components.groups if group.name == name)
        projection = attention.out_proj if isinstance(attention, SlimSelfAttention) else attention.proj
        fill = self.fills[name].view(group.size, group.unit)
        columns = [position * group.unit + offset for position in positions for offset in range(group.unit)]
        values = torch.cat([fill[present[position]] for position in positions])
        _add_to_bias(projection, projection.weight[:, columns].detach() @ values.to(projection.weight))

    def _fold(self, pruning, masks: Mapping[str, torch.Tensor]) -> bool:
        """Fold the constant the doomed channels hand each consumer into its bias, if that is exact: every
        consumer a Linear or an unpadded, ungrouped conv whose inputs from these channels are one constant
        per channel on two different inputs and at every position. False (nothing changed) otherwise: e.g.
        a padded conv sees the constant only inside the image, so its share differs at the borders."""
        consumers = []
        for dependency, indices in pruning:
            module = dependency.target.module
            if getattr(dependency.handler, "__name__", "") != "prune_in_channels":
                continue
            if isinstance(module, nn.Conv2d):
                padded = module.padding != "valid" if isinstance(module.padding, str) else any(module.padding)
                if module.groups != 1 or padded:
                    return False
            elif not isinstance(module, nn.Linear):
                return False
            consumers.append((module, [getattr(index, "idx", index) for index in indices]))
        if not consumers:
            return False
        seen: dict[int, torch.Tensor] = {}
        hooks = [module.register_forward_pre_hook(lambda mod, args: seen.__setitem__(id(mod), args[0].detach()))
                 for module, _ in consumers]
        probe = torch.cat([self.example, self.example.roll(1, dims=-1) * 0.5 + 0.25])
        try:
            with torch.no_grad(), masked(self.model, self.components, self.present_view(masks), self.present_fills()):
                self.model(probe)
        finally:
            for hook in hooks:
                hook.remove()
        shares = []
        for module, indices in consumers:
            inputs = seen[id(module)]
            channels = (inputs.movedim(1, -1) if isinstance(module, nn.Conv2d) else inputs)[..., indices]
            flat = channels.reshape(-1, len(indices))
            if float((flat - flat[0]).abs().max()) > LOGIT_TOLERANCE * max(1.0, float(flat.abs().max())):
                return False
            weight = module.weight.detach()[:, indices]
            shares.append((module, (weight.sum(dim=(2, 3)) if weight.dim() == 4 else weight) @ flat[0].to(weight)))
        for module, share in shares:
            _add_to_bias(module, share)
        return True


def _add_to_bias(module: nn.Module, share: torch.Tensor) -> None:
    """``module.bias += share``, adding a bias where the module has none."""
    with torch.no_grad():
        if module.bias is None:
            module.bias = nn.Parameter(torch.zeros_like(share))
        module.bias += share

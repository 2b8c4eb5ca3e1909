"""Scores -> a global ranking -> nested keep-masks; masks applied to a model as a context manager."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
from torch import nn

from pxp_bench.attention import explicit_attention_active
from pxp_bench.components import ComponentGroup, Components
from pxp_bench.errors import ComponentError
from pxp_bench.guards import check_scores


def rank_components(components: Components, scores: Mapping[str, torch.Tensor],
                    max_layer_rate: float | None = None) -> torch.Tensor:
    """Flat component indices, least relevant first; ties keep the stable (layer, channel) order (saved
    scores are checked here as a method's are: `pxp_bench.guards.check_scores`).

    With ``max_layer_rate`` R, a layer gives up at most ``floor(R * size)`` of its components: those
    beyond its cap are left out of the order, so every prefix keeps at least (1 - R) of every layer (the
    order may be shorter than ``components.total``; a prefix of it is still a global ranking).
    """
    check_scores(components, scores)
    flat = torch.cat([scores[g.name].detach().flatten().double().cpu() for g in components.groups])
    order = torch.sort(flat, stable=True).indices
    return order if max_layer_rate is None else capped_order(components, order, max_layer_rate)


def capped_order(components: Components, order: torch.Tensor, max_layer_rate: float) -> torch.Tensor:
    """``order`` without the components a layer cannot give up under ``max_layer_rate`` (greedy, in order:
    Torch-Pruning's ``max_pruning_ratio`` per layer, applied to a global ranking)."""
    sizes = torch.tensor([g.size for g in components.groups])
    layer_of = torch.repeat_interleave(torch.arange(len(sizes)), sizes)[order]
    caps = torch.floor(sizes.double() * max_layer_rate + 1e-9).long()
    taken = torch.zeros_like(layer_of)  # how many of its layer come before each entry, itself excluded
    for layer in range(len(sizes)):
        chosen = layer_of == layer
        taken[chosen] = torch.arange(int(chosen.sum()))
    return order[taken < caps[layer_of]]


def pruned_count(rate: float, total: int) -> int:
    """How many components rate ``rate`` prunes: ``floor(rate * total + 1e-9)``."""
    return math.floor(rate * total + 1e-9)


def keep_masks(components: Components, order: torch.Tensor, n_pruned: int) -> dict[str, torch.Tensor]:
    """Boolean keep-masks per group with the first ``n_pruned`` of ``order`` switched off."""
    keep = torch.ones(components.total, dtype=torch.bool)
    keep[order[:n_pruned]] = False
    return dict(zip(components.names, keep.split([g.size for g in components.groups])))


def pruned_fractions(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per group, the fraction of its components that a set of masks prunes."""
    return {name: 1.0 - mask.float().mean().item() for name, mask in masks.items()}


class MaskHandle:
    """What `masked` yields: which sites have been reached by a forward pass so far."""

    def __init__(self, sites: list[str]) -> None:
        self.sites = sites
        self.fired: set[str] = set()

    def check_all_fired(self) -> None:
        """Fail loudly if a masked module did not run: its mask would silently do nothing."""
        silent = [site for site in self.sites if site not in self.fired]
        if silent:
            raise ComponentError(
                f"masked modules {', '.join(silent)} did not run in the forward pass, so their masks "
                "had no effect. Rediscover the components on this model."
            )


def channel_view(values: torch.Tensor, group: ComponentGroup, like: torch.Tensor) -> torch.Tensor:
    """Per-component ``values`` expanded to the site tensor's channels, shaped to broadcast on ``like``."""
    return _site_view(values.repeat_interleave(group.unit) if group.unit > 1 else values, group, like)


def _site_view(values: torch.Tensor, group: ComponentGroup, like: torch.Tensor) -> torch.Tensor:
    """Per-channel ``values`` (one per site channel, already expanded) shaped to broadcast on ``like``."""
    shape = [1] * like.dim()
    shape[group.channel_dim] = -1
    return values.to(device=like.device, dtype=like.dtype).view(shape)


def site_hook(module: nn.Module, group: ComponentGroup, transform) -> torch.utils.hooks.RemovableHandle:
    """Hook ``transform(tensor) -> tensor`` onto the site tensor: the module's output, or its first
    input for ``at_input`` groups. Input hooks run first (``prepend``): an LRP rule hook on the same
    module wraps its input, and the site must be the tensor *below* that wrapper, where the rule's
    relevance arrives."""
    if group.at_input:
        return module.register_forward_pre_hook(lambda _, args: (transform(args[0]), *args[1:]), prepend=True)
    return module.register_forward_hook(lambda _, __, output: transform(output))


@contextmanager
def masked(
    model: nn.Module, components: Components, masks: Mapping[str, torch.Tensor],
    fills: Mapping[str, torch.Tensor] | None = None,
) -> Iterator[MaskHandle]:
    """Remove the pruned components inside the block: zero them, or with ``fills`` (per group, one value per
    site channel: `pxp_bench.removal`) replace them by those values; every hook is removed on exit."""
    modules = dict(model.named_modules())
    handle = MaskHandle([group.site for group in components.groups])
    hooks = []

    def make_transform(group: ComponentGroup):
        keep = masks[group.name]
        fill = None if fills is None else fills[group.name] * (~keep).repeat_interleave(group.unit).to(fills[group.name])
        shaped: dict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = {}

        def transform(tensor: torch.Tensor) -> torch.Tensor:
            handle.fired.add(group.site)
            key = (tensor.dim(), tensor.device, tensor.dtype)
            if key not in shaped:
                shaped[key] = (channel_view(keep, group, tensor),
                               None if fill is None else _site_view(fill, group, tensor))
            keep_view, fill_view = shaped[key]
            if torch.is_grad_enabled():
                tensor = tensor * keep_view
                return tensor if fill_view is None else tensor + fill_view
            tensor = tensor.mul_(keep_view)  # evaluation: no autograd, spare the allocation
            return tensor if fill_view is None else tensor.add_(fill_view)

        return transform

    with explicit_attention_active(model):
        try:
            for group in components.groups:
                if bool(masks[group.name].all()):  # nothing pruned here: no hook, no work
                    handle.fired.add(group.site)
                    continue
                hooks.append(site_hook(modules[group.site], group, make_transform(group)))
            yield handle
        finally:
            for hook in hooks:
                hook.remove()

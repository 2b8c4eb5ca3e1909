"""Capture the components' site tensors during a forward pass, for gradient x activation methods."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from pxp_bench.attention import explicit_attention_active
from pxp_bench.components import ComponentGroup, Components
from pxp_bench.masking import site_hook


def per_component(value: torch.Tensor, group: ComponentGroup, absolute: bool = False) -> torch.Tensor:
    """Sum a site-shaped tensor per component over positions / tokens: (batch, size).

    A head's channels are summed first, per position; ``absolute`` takes |.| per position before the
    sum over positions (``aggregation=abs_per_position``).
    """
    channels = value.movedim(group.channel_dim, 1) if value.dim() > 2 else value  # (batch, channels, *pos)
    if group.unit > 1:
        channels = channels.unflatten(1, (group.size, group.unit)).sum(dim=2)
    if absolute:
        channels = channels.abs()
    return channels.flatten(2).sum(dim=2) if channels.dim() > 2 else channels


class SiteTensors:
    """The site tensors recorded so far, per group: a list with one entry per call of the site module,
    over every forward pass since the block began or since the last `clear` (call it once per batch)."""

    def __init__(self, components: Components) -> None:
        self.groups = {group.name: group for group in components.groups}
        self.tensors: dict[str, list[torch.Tensor]] = {}

    def clear(self) -> None:
        self.tensors = {}

    def flat(self) -> list[torch.Tensor]:
        return [tensor for tensors in self.tensors.values() for tensor in tensors]

    def per_sample(self, values: list[torch.Tensor], absolute: bool = False) -> dict[str, torch.Tensor]:
        """Sum ``values`` (aligned with ``flat()``) per component over positions and calls:
        ``{group: (batch, size)}``; ``absolute`` as in `per_component`."""
        out: dict[str, torch.Tensor] = {}
        position = 0
        for name, tensors in self.tensors.items():
            parts = [per_component(value, self.groups[name], absolute) for value in values[position:position + len(tensors)]]
            position += len(tensors)
            out[name] = torch.stack(parts).sum(dim=0) if len(parts) > 1 else parts[0]
        return out


@contextmanager
def captured_sites(model: nn.Module, components: Components) -> Iterator[SiteTensors]:
    """Record each site tensor of every forward pass inside the block: the tensors accumulate (and keep
    their autograd graphs alive) until ``sites.clear()``, so clear once per batch. The model continues with a
    copy, so in-place ops downstream (an inplace ReLU after a BatchNorm) cannot overwrite the recorded tensor.
    Hooks are removed on exit."""
    modules = dict(model.named_modules())
    sites = SiteTensors(components)
    handles = []

    def make_transform(name: str):
        def transform(tensor: torch.Tensor) -> torch.Tensor:
            sites.tensors.setdefault(name, []).append(tensor)
            return tensor.clone()

        return transform

    with explicit_attention_active(model):
        try:
            for group in components.groups:
                handles.append(site_hook(modules[group.site], group, make_transform(group.name)))
            yield sites
        finally:
            for handle in handles:
                handle.remove()

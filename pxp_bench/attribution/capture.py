"""Capture the components' site tensors during a forward pass, for gradient x activation methods."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from pxp_bench.components import Components


class SiteTensors:
    """The site outputs of the last forward pass, per group (a list: one entry per call)."""

    def __init__(self) -> None:
        self.tensors: dict[str, list[torch.Tensor]] = {}

    def clear(self) -> None:
        self.tensors = {}

    def flat(self) -> list[torch.Tensor]:
        return [tensor for tensors in self.tensors.values() for tensor in tensors]

    def per_sample(self, values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Sum ``values`` (aligned with ``flat()``) over positions and calls: ``{group: (batch, size)}``."""
        out: dict[str, torch.Tensor] = {}
        position = 0
        for name, tensors in self.tensors.items():
            total = None
            for value in values[position:position + len(tensors)]:
                summed = value.flatten(2).sum(dim=2) if value.dim() > 2 else value
                total = summed if total is None else total + summed
            position += len(tensors)
            out[name] = total
        return out


@contextmanager
def captured_sites(model: nn.Module, components: Components) -> Iterator[SiteTensors]:
    """Record each site's output; the model receives a copy so in-place ops downstream (an inplace
    ReLU after a BatchNorm) cannot overwrite the recorded tensor. Hooks are removed on exit."""
    modules = dict(model.named_modules())
    sites = SiteTensors()
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            sites.tensors.setdefault(name, []).append(output)
            return output.clone()

        return hook

    try:
        for group in components.groups:
            handles.append(modules[group.site].register_forward_hook(make_hook(group.name)))
        yield sites
    finally:
        for handle in handles:
            handle.remove()

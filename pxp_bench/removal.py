"""Mean removal (``--removal mean``, `pxp_bench.conditions`): a pruned component's output replaced by its mean
over the reference samples, per site channel (a filter's or a neuron's one channel, a head's ``head_dim``
channels: its mean output vector), averaged over the samples and every other axis (positions, tokens).

The means are those of the unpruned model, measured once per run on the reference set, so that every rate
and every method of a setting removes a component the same way (Blücher et al. 2024 study how the choice
of what replaces a removed input reorders attribution methods; this is its counterpart for components).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from pxp_bench.attention import explicit_attention_active
from pxp_bench.components import Components
from pxp_bench.masking import site_hook


@torch.no_grad()
def site_means(model: nn.Module, components: Components, batches: Iterable, device: torch.device) -> dict[str, torch.Tensor]:
    """Per group, each site channel's mean over ``batches`` (inputs first in each batch) and every axis but
    the channel's: float32 on the CPU, ``size * unit`` values."""
    modules = dict(model.named_modules())
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def recorder(group):
        def record(tensor: torch.Tensor) -> torch.Tensor:
            moved = tensor.detach().float().movedim(group.channel_dim, -1)
            flat = moved.reshape(-1, moved.shape[-1])
            sums[group.name] = sums.get(group.name, 0) + flat.sum(dim=0)
            counts[group.name] = counts.get(group.name, 0) + flat.shape[0]
            return tensor
        return record

    with explicit_attention_active(model):
        hooks = [site_hook(modules[group.site], group, recorder(group)) for group in components.groups]
        try:
            for batch in batches:
                model(batch[0].to(device))
        finally:
            for hook in hooks:
                hook.remove()
    return {group.name: (sums[group.name] / counts[group.name]).cpu() for group in components.groups}

"""Helpers shared by the tests (kept out of conftest.py, which benchmarks/ also has)."""

from __future__ import annotations

import torch

QUICK_RATES = (0.0, 0.3, 0.6)


def state_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def has_hooks(model: torch.nn.Module) -> bool:
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )

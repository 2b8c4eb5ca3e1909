"""Find the prunable units of any ``nn.Module`` by dataflow in a probe forward pass (PROTOCOL section 2).

A component is scored and masked at the same tensor, its *site*: for ``filters`` the output of the
BatchNorm that consumes the conv's output (found by tensor identity, not module order), else the conv's
output; for CNN ``neurons`` the output of each hidden Linear of the classifier (every Linear except the
one producing the logits). Only modules that actually ran in the probe are returned, so a module that
is never called can never carry a mask.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from pxp_bench.errors import ComponentError
from pxp_bench.specs import COMPONENT_KINDS


@dataclass(frozen=True)
class ComponentGroup:
    """The components of one layer: ``size`` channels along dim 1 of the site module's output."""

    name: str
    """The producing module (conv or Linear); its weights define magnitude scores."""
    site: str
    """The module whose output carries the components (where they are scored and masked)."""
    size: int


@dataclass(frozen=True)
class Components:
    """All components of one kind in a model, in forward-execution order of their producers."""

    kind: str
    groups: tuple[ComponentGroup, ...]

    @property
    def total(self) -> int:
        return sum(group.size for group in self.groups)

    @property
    def names(self) -> list[str]:
        return [group.name for group in self.groups]


class _Probe:
    """Records, in execution order, each module call's first input and output tensors."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[str, nn.Module, object, object]] = []
        self._handles = [
            module.register_forward_hook(self._hook(name)) for name, module in model.named_modules()
        ]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            self.calls.append((name, module, inputs[0] if inputs else None, output))

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _probe(model: nn.Module, example: torch.Tensor) -> tuple[list[tuple[str, nn.Module, object, object]], object]:
    probe = _Probe(model)
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        probe.remove()
    return probe.calls, output


def _refuse_shared(calls: list[tuple[str, nn.Module, object, object]], names: list[str]) -> None:
    counts = Counter(name for name, *_ in calls)
    shared = [name for name in names if counts[name] > 1]
    if shared:
        raise ComponentError(
            f"modules {', '.join(shared)} run more than once per forward pass; components of shared "
            "modules are not supported. Give each use its own module."
        )


def _consumer_of(tensor: object, calls: list[tuple[str, nn.Module, object, object]]) -> str | None:
    for name, module, first_input, _ in calls:
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and first_input is tensor:
            return name
    return None


def _filters(calls: list[tuple[str, nn.Module, object, object]]) -> list[ComponentGroup]:
    convs = [(name, module, out) for name, module, _, out in calls if isinstance(module, nn.Conv2d)]
    _refuse_shared(calls, [name for name, *_ in convs])
    return [
        ComponentGroup(name, _consumer_of(out, calls) or name, module.out_channels)
        for name, module, out in convs
    ]


def _cnn_neurons(
    calls: list[tuple[str, nn.Module, object, object]], model_output: object
) -> list[ComponentGroup]:
    linears = [(name, module, out) for name, module, _, out in calls if isinstance(module, nn.Linear)]
    _refuse_shared(calls, [name for name, *_ in linears])
    heads = [name for name, _, out in linears if out is model_output] or [n for n, *_ in linears[-1:]]
    hidden = [(name, module, out) for name, module, out in linears if name not in heads]
    return [
        ComponentGroup(name, _consumer_of(out, calls) or name, module.out_features)
        for name, module, out in hidden
    ]


def discover_components(model: nn.Module, kind: str, example: torch.Tensor) -> Components:
    """Find the components of ``kind`` in ``model`` by running ``example`` (a batch) through it."""
    if kind not in COMPONENT_KINDS:
        raise ComponentError(f"unknown component kind '{kind}'; choose one of {', '.join(COMPONENT_KINDS)}.")
    if kind == "heads":
        raise ComponentError(
            "component kind 'heads' needs a transformer with discoverable attention heads; "
            "this model has none. Use --components filters or neurons."
        )
    calls, output = _probe(model, example)
    groups = _filters(calls) if kind == "filters" else _cnn_neurons(calls, output)
    if not groups:
        what = "no Conv2d layer" if kind == "filters" else "no hidden fully connected layer"
        raise ComponentError(
            f"the model has {what} that ran in a forward pass, so it has no '{kind}' to prune. "
            "Choose another --components."
        )
    return Components(kind, tuple(groups))

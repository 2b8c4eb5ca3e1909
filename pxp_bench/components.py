"""Find the prunable units of any ``nn.Module`` by dataflow in a probe forward pass (PROTOCOL section 2).

A component is scored and masked at the same tensor, its *site*:
- ``filters``: the output of the BatchNorm that consumes the conv's output (found by tensor identity,
  not module order), else the conv's output;
- ``neurons``: for a CNN the output of each hidden Linear of the fully connected classifier: a Linear
  fed by a flat ``(batch, features)`` tensor (flattened or pooled feature maps), except the one
  producing the logits; a Linear on a higher-dimensional tensor (ConvNeXt's channels-last MLP inside a
  conv block) is not a classifier neuron, since its channel axis is not dim 1. For a transformer the
  output of each MLP's activation (an activation module fed by a Linear), i.e. the hidden units of
  every block's MLP;
- ``heads``: the input of each attention module's output projection, the concatenated per-head
  outputs (under `explicit_attention`, which the probe, masking and capture switch on themselves).
- decoder LMs (`pxp_bench.lm.model.CausalLM`): query heads and MLP neurons by structure
  (`pxp_bench.lm.architecture`); they have no filters.
  An attention module that falls back to its fused path (masks, separate key / value inputs) has no
  per-head tensor: it is excluded with a warning naming it, and recorded in ``Components.excluded``.
Only modules that actually ran in the probe are returned, so a module that is never called can never
carry a mask.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import warnings

import torch
from torch import nn

from pxp_bench.attention import attention_modules, explicit_attention_active, output_projection
from pxp_bench.errors import ComponentError
from pxp_bench.lm.architecture import lm_sites
from pxp_bench.lm.model import is_causal_lm
from pxp_bench.specs import COMPONENT_KINDS


@dataclass(frozen=True)
class ComponentGroup:
    """The components of one layer: ``size`` channels along dim 1 of the site module's output."""

    name: str
    """The producing module (conv, Linear or attention); its weights define magnitude scores."""
    site: str
    """The module whose output (or input, see ``at_input``) carries the components."""
    size: int
    channel_dim: int = 1
    """Where the channels lie in the site tensor: 1 for (batch, channels, ...), -1 for tokens."""
    unit: int = 1
    """Channels per component: a head spans ``head_dim`` channels."""
    at_input: bool = False
    """The components live in the site module's input (heads: the output projection's input)."""


@dataclass(frozen=True)
class Components:
    """All components of one kind in a model, in forward-execution order of their producers."""

    kind: str
    groups: tuple[ComponentGroup, ...]
    excluded: tuple[str, ...] = ()
    """Modules that hold components of this kind but cannot expose them (fused attention)."""

    @property
    def total(self) -> int:
        return sum(group.size for group in self.groups)

    @property
    def names(self) -> list[str]:
        return [group.name for group in self.groups]


class _Probe:
    """Records, in execution order, each module call's first input and output tensors."""
    # (the output projection of attention is recorded too: its call proves the heads' site exists)

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
        with torch.no_grad(), explicit_attention_active(model):
            output = model(example)
    except RuntimeError as exc:
        raise ComponentError(
            f"the model cannot run on inputs of shape {tuple(example.shape)}: {str(exc).splitlines()[0]}. "
            "Check --image-size and the dataset."
        ) from None
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
    """Hidden units of the fully connected classifier: Linear layers on flat (batch, features) tensors,
    whose units are provably along dim 1; the Linear that produces the logits is not hidden."""
    linears = [(name, module, first_input, out) for name, module, first_input, out in calls
               if isinstance(module, nn.Linear)]
    _refuse_shared(calls, [name for name, *_ in linears])
    flat = [(name, module, out) for name, module, first_input, out in linears
            if isinstance(first_input, torch.Tensor) and first_input.dim() == 2]
    heads = [name for name, _, _, out in linears if out is model_output] or [n for n, *_ in linears[-1:]]
    return [
        ComponentGroup(name, _consumer_of(out, calls) or name, module.out_features)
        for name, module, out in flat if name not in heads
    ]


ACTIVATIONS = (nn.GELU, nn.ReLU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.LeakyReLU)
GELU_NAMES = {"GELU", "GELUTanh", "QuickGELU"}
"""timm's own GELU classes (not subclasses of nn.GELU), recognised by name to avoid importing timm."""


def is_activation(module: nn.Module) -> bool:
    return isinstance(module, ACTIVATIONS) or type(module).__name__ in GELU_NAMES


def _transformer_neurons(calls: list[tuple[str, nn.Module, object, object]]) -> list[ComponentGroup]:
    linear_outputs = {id(out): (name, module) for name, module, _, out in calls if isinstance(module, nn.Linear)}
    groups = []
    for name, module, first_input, _ in calls:
        if is_activation(module) and id(first_input) in linear_outputs:
            producer, linear = linear_outputs[id(first_input)]
            groups.append(ComponentGroup(producer, name, linear.out_features, channel_dim=-1))
    _refuse_shared(calls, [group.site for group in groups])
    return groups


def _heads(model: nn.Module, calls: list[tuple[str, nn.Module, object, object]]) -> tuple[list[ComponentGroup], tuple[str, ...]]:
    """Heads of every attention module that ran explicitly; the names of those that ran fused."""
    ran = {name for name, *_ in calls}
    groups, fused = [], []
    for name, module in attention_modules(model):
        projection = output_projection(name, module)
        if projection in ran:
            channels = dict(model.named_modules())[projection].in_features
            groups.append(ComponentGroup(name, projection, module.num_heads, channel_dim=-1,
                                         unit=channels // module.num_heads, at_input=True))
        elif name in ran:
            fused.append(name)
    _refuse_shared(calls, [group.site for group in groups])
    return groups, tuple(fused)


def find_components(model: nn.Module, kind: str, example: torch.Tensor) -> Components:
    """The components of ``kind`` in ``model`` by running ``example`` (a batch); possibly none."""
    if kind not in COMPONENT_KINDS:
        raise ComponentError(f"unknown component kind '{kind}'; choose one of {', '.join(COMPONENT_KINDS)}.")
    calls, output = _probe(model, example)
    excluded: tuple[str, ...] = ()
    if is_causal_lm(model):  # decoder LMs: by structure (`pxp_bench.lm.architecture`)
        groups = [ComponentGroup(name, site, size, channel_dim=-1, unit=unit, at_input=True)
                  for name, site, size, unit in lm_sites(model, kind, {name for name, *_ in calls})]
        _refuse_shared(calls, [group.site for group in groups])
    elif kind == "filters":
        groups = _filters(calls)
    elif kind == "heads":
        groups, excluded = _heads(model, calls)
    elif attention_modules(model):
        groups = _transformer_neurons(calls)
    else:
        groups = _cnn_neurons(calls, output)
    return Components(kind, tuple(groups), excluded)


def discover_components(model: nn.Module, kind: str, example: torch.Tensor) -> Components:
    """Find the components of ``kind`` in ``model``; refuse a model that has none, and warn about
    attention modules whose heads cannot be exposed."""
    components = find_components(model, kind, example)
    if components.excluded:
        warnings.warn(
            f"attention modules {', '.join(components.excluded)} ran their fused path (masks or other "
            "unsupported options), so their heads are not scored or pruned.",
            stacklevel=2,
        )
    if not components.groups:
        what = {"filters": "no Conv2d layer",
                "neurons": "no hidden fully connected layer (a Linear on flat features before the logits "
                           "layer, or a transformer MLP; Linear layers inside conv blocks, such as "
                           "ConvNeXt's channels-last MLP, are not classifier neurons)",
                "heads": "no attention module (torchvision MultiheadAttention, timm Attention, or a Llama-family or "
                         "GPT-2 attention)"}[kind]
        raise ComponentError(
            f"the model has {what} that ran in a forward pass, so it has no '{kind}' to prune. "
            "Choose another --components."
        )
    return components

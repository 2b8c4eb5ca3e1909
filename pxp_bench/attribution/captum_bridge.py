"""captum's layer attributions as component scores: ``deeplift``, ``gradient_shap``, ``conductance``, ``ablation``.

One bridge: each component group is scored at its *site* (the output of module ``group.site``, or its
first input for ``at_input`` groups, i.e. heads: captum's ``attribute_to_layer_input=True``), by one
captum layer class called on that site module, with the true class's logit as the target. A site-shaped
attribution becomes per-sample per-component relevances (`pxp_bench.attribution.capture.per_component`:
summed over positions / tokens and over a head's head_dim channels), aggregated over the reference
samples by `RelevanceAggregator` (``aggregation``, ``normalize`` as for the other methods). Baselines are
zero inputs (DeepLift, GradientSHAP, Conductance), so each layer's attributions sum to
y(x) - y(0) (exactly for DeepLift and Conductance's path integral, in expectation for GradientSHAP).

- ``deeplift``: captum ``LayerDeepLift`` (rescale rule), zero input baseline. CNNs only: captum's DeepLift
  has rules for ReLU, ELU, LeakyReLU, Sigmoid, Tanh, Softplus, Softmax *modules* and max pooling; a
  transformer's GELU, its functional softmax and the q k^T / attention x v products get no rule (captum
  silently back-propagates plain gradients through them), so the result would not be DeepLift.
  A CNN holding another activation module (GELU, SiLU, Hardswish, Mish) is refused for the same reason.
  captum refuses a nonlinearity module that runs twice per forward pass (torchvision's BasicBlock calls
  its ``relu`` twice): for the call, each such module is replaced by one copy per call, and put back.
- ``gradient_shap``: captum ``LayerGradientShap``: mean over ``n_samples`` draws of
  (a(x~) - a(0)) * dy/da at x~ = 0 + alpha (x + eps - 0), alpha ~ U(0, 1), eps ~ N(0, stdevs^2)
  (stdevs in input units; 0 = a Monte-Carlo latent IG). captum draws eps from torch's global RNG and alpha
  from numpy's: every captum call runs inside a fork of both, seeded per reference sample from the run's
  ``sampler`` stream (`RunContext.sample_generator`), the same draws for every layer; so the same seed gives
  the same scores whatever the batch size, and the global RNGs are left as they were.
- ``conductance``: captum ``LayerConductance``: sum_{k=1..m} (a(x_k) - a(x_{k-1})) * dy/da(x_{k-1}) at the
  m + 1 = ``n_steps`` + 1 evenly spaced points x_k = (k / m) x from 0 to x (captum's ``riemann_trapezoid``
  points). Not captum's default ``gausslegendre``: its points exclude 0 and x, so the differences telescope
  to a(x_m) - a(x_0) over a shorter path and the attributions miss part of y(x) - y(0).
- ``ablation``: captum ``LayerFeatureAblation`` with a ``layer_mask`` that groups each component's channels
  (the whole channel at every position / token; a head's head_dim channels): per component
  score(c) = mean_i [q(x_i) - q(x_i with c zeroed at its site)], signed, with q the true-class logit
  (``quantity=logit``) or minus the cross-entropy over the run's classes (``quantity=loss``: the rise in
  loss). Zeroing at the site is exactly what pxp-bench's masking prunes (`pxp_bench.masking.masked`).
  `ablation_scores` is public: other parts of pxp-bench measure a method's agreement with it.

Why captum's layer classes rather than our own hooks (as `pxp_bench.attribution.gradients` does): the
library's reference implementations. Their cost: none of these four accepts a list of layers in captum
0.9.0 (only LayerActivation, LayerGradientXActivation and LayerIntegratedGradients do), so every
layer is one captum call per reference sample batch, and the cost is layers x (passes per call):

- deeplift: 1 forward + backward on 2 x batch samples (inputs and baselines together);
- gradient_shap: 1 forward + backward on n_samples x batch, plus 2 forwards (inputs, baselines);
- conductance: 1 forward + backward on (n_steps + 1) x batch;
- ablation: 2 forwards on the batch (layer values, unablated output) plus ceil(size / batch_components)
  forwards on batch_components x batch samples: one forward per component, batched (no backward).

Where a call expands the batch (deeplift, gradient_shap, conductance), the reference batch is split into
chunks so that one call processes about as many samples as one reference batch. Every captum call runs
inside explicit attention (the heads' site only exists there), with ``inplace`` switched off on every
module that has the flag (DeepLift's hooks and the ablation's substituted site tensors need it), and the
model is left as found: flags, attributes captum sets on modules (``input``/``output``), hooks.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from pxp_bench.attention import explicit_attention_active
from pxp_bench.attribution.aggregate import RelevanceAggregator
from pxp_bench.attribution.capture import per_component
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.tasks.base import Task
from pxp_bench.components import ComponentGroup, Components, is_activation
from pxp_bench.errors import ConfigError
from pxp_bench.masking import site_hook

ABLATION_QUANTITIES = ("logit", "loss")
"""``logit``: the true-class logit; ``loss``: minus the cross-entropy over the run's classes."""


# --- the model, prepared for captum and left as found ------------------------------------------------------

@contextmanager
def captum_ready(model: nn.Module) -> Iterator[None]:
    """Explicit attention, ``inplace=False`` on every module with the flag; on exit the flags are restored and
    attributes captum added to modules (DeepLift's ``input``/``output``/``input_ref``, left when a call
    raises) are removed."""
    modules = list(model.modules())
    attributes = [set(vars(module)) for module in modules]
    switched = [module for module in modules if getattr(module, "inplace", None) is True]
    try:
        for module in switched:
            module.inplace = False
        with explicit_attention_active(model):
            yield
    finally:
        for module in switched:
            module.inplace = True
        for module, before in zip(modules, attributes):
            for key in set(vars(module)) - before:
                delattr(module, key)


def _site_ranks(model: nn.Module, components: Components, example: torch.Tensor) -> dict[str, int]:
    """The number of dimensions of each group's site tensor, from one forward pass of one sample."""
    modules = dict(model.named_modules())
    ranks: dict[str, int] = {}
    handles = []

    def record(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        def transform(tensor: torch.Tensor) -> torch.Tensor:
            ranks[name] = tensor.dim()
            return tensor

        return transform

    try:
        for group in components.groups:
            handles.append(site_hook(modules[group.site], group, record(group.name)))
        with torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return ranks


def _chunks(inputs: torch.Tensor, targets: torch.Tensor, size: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    for offset in range(0, len(inputs), size):
        yield offset, inputs[offset:offset + size], targets[offset:offset + size]


def _layer_method_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    attribute: Callable[[nn.Module, ComponentGroup, torch.Tensor, torch.Tensor, int], torch.Tensor],
    samples_per_call: int, aggregation: str, normalize: str,
) -> dict[str, torch.Tensor]:
    """Score every group with ``attribute(site module, group, inputs, targets, index of the first sample)``
    (a site-shaped attribution), called on chunks of ``samples_per_call`` reference samples."""
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    modules = dict(model.named_modules())
    with captum_ready(model), torch.enable_grad():
        for start, inputs, targets in context.track(reference.indexed_batches()):
            relevances: dict[str, list[torch.Tensor]] = {group.name: [] for group in components.groups}
            for offset, chunk, chunk_targets in _chunks(inputs, targets, samples_per_call):
                for group in components.groups:
                    attribution = attribute(modules[group.site], group, chunk, chunk_targets, start + offset)
                    relevances[group.name].append(
                        per_component(attribution.detach(), group, aggregator.per_position))
            aggregator.add({name: torch.cat(parts) for name, parts in relevances.items()})
    return aggregator.scores()


# --- deeplift ---------------------------------------------------------------------------------------------

class _PerCall(nn.Module):
    """Stands in for a nonlinearity that runs several times per forward pass: call k goes to copy k, so that
    captum's DeepLift (which keeps one input / output per module) sees each use as its own module."""

    def __init__(self, original: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(original) for _ in range(calls))
        self.calls = 0

    def forward(self, *args, **kwargs):
        module = self.copies[self.calls % len(self.copies)]
        self.calls += 1
        return module(*args, **kwargs)


def _deeplift_checked(model: nn.Module) -> None:
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    unsupported = sorted({type(m).__name__ for m in model.modules()
                          if is_activation(m) and type(m) not in SUPPORTED_NON_LINEAR})
    if unsupported:
        raise ConfigError(
            f"deeplift: captum's DeepLift has no rule for {', '.join(unsupported)} (only ReLU, ELU, LeakyReLU, "
            "Sigmoid, Tanh, Softplus, Softmax and max pooling), so its result would not be DeepLift. "
            "Choose another method for this model."
        )


@contextmanager
def _reused_split(model: nn.Module, example: torch.Tensor) -> Iterator[list[_PerCall]]:
    """Replace each DeepLift nonlinearity that runs more than once per forward pass by a `_PerCall`."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    counts: dict[str, int] = {}
    handles = []
    named = [(name, m) for name, m in model.named_modules() if type(m) in SUPPORTED_NON_LINEAR and name]
    try:
        for name, module in named:
            handles.append(module.register_forward_pre_hook(
                lambda _m, _a, name=name: counts.__setitem__(name, counts.get(name, 0) + 1)))
        with torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    replaced: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for name, module in named:
            if counts.get(name, 0) > 1:
                parent_name, _, attribute = name.rpartition(".")
                parent = model.get_submodule(parent_name)
                replaced.append((parent, attribute, module))
                setattr(parent, attribute, _PerCall(module, counts[name]))
        yield [getattr(parent, attribute) for parent, attribute, _ in replaced]
    finally:
        for parent, attribute, module in reversed(replaced):
            setattr(parent, attribute, module)


def deeplift_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    aggregation: str = "abs", normalize: str = "none",
) -> dict[str, torch.Tensor]:
    """captum LayerDeepLift (rescale rule, zero input baseline) at each component's site."""
    from captum.attr import LayerDeepLift

    _deeplift_checked(model)
    example = next(iter(reference.batches()))[0]
    with captum_ready(model), _reused_split(model, example) as split:
        def attribute(site, group, inputs, targets, start):
            for stand_in in split:
                stand_in.calls = 0
            return LayerDeepLift(model, site).attribute(
                inputs, baselines=torch.zeros_like(inputs), target=targets,
                attribute_to_layer_input=group.at_input)

        return _layer_method_scores(model, components, reference, context, attribute,
                                    max(1, reference.batch_size // 2), aggregation, normalize)


# --- gradient_shap ----------------------------------------------------------------------------------------

def sample_seed(context: RunContext, index: int) -> int:
    """The seed of captum's global-RNG draws for reference sample ``index`` (the run's ``sampler`` stream)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=context.sample_generator(index)))


@contextmanager
def seeded_global_rngs(seed: int, device: torch.device) -> Iterator[None]:
    """torch's (CPU and ``device``'s) and numpy's global RNGs seeded with ``seed`` inside, restored on exit."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.random.default_generator.manual_seed(seed)
            if devices:
                with torch.cuda.device(devices[0]):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(state)


def gradient_shap_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    n_samples: int = 20, stdevs: float = 0.0, aggregation: str = "abs", normalize: str = "none",
) -> dict[str, torch.Tensor]:
    """captum LayerGradientShap, zero baseline, ``n_samples`` draws per reference sample, seeded per sample."""
    from captum.attr import LayerGradientShap

    def attribute(site, group, inputs, targets, start):
        with seeded_global_rngs(sample_seed(context, start), inputs.device):
            return LayerGradientShap(model, site).attribute(
                inputs, baselines=torch.zeros_like(inputs[:1]), n_samples=n_samples, stdevs=stdevs,
                target=targets, attribute_to_layer_input=group.at_input)

    # one sample per call: its draws come from its own seed, whatever the batch size
    return _layer_method_scores(model, components, reference, context, attribute, 1, aggregation, normalize)


# --- conductance ------------------------------------------------------------------------------------------

def conductance_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    n_steps: int = 20, aggregation: str = "abs", normalize: str = "none",
) -> dict[str, torch.Tensor]:
    """captum LayerConductance from a zero input baseline, ``n_steps`` even steps (``riemann_trapezoid``)."""
    from captum.attr import LayerConductance

    def attribute(site, group, inputs, targets, start):
        return LayerConductance(model, site).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=targets, n_steps=n_steps,
            method="riemann_trapezoid", attribute_to_layer_input=group.at_input)

    return _layer_method_scores(model, components, reference, context, attribute,
                                max(1, reference.batch_size // (n_steps + 1)), aggregation, normalize)


# --- ablation ---------------------------------------------------------------------------------------------

def _layer_mask(group: ComponentGroup, rank: int, device: torch.device) -> torch.Tensor:
    """captum's ``layer_mask``: component index of each channel, broadcast over batch and positions."""
    ids = torch.arange(group.size * group.unit, device=device) // group.unit
    shape = [1] * rank
    shape[group.channel_dim] = -1
    return ids.view(shape)


def _one_per_component(attribution: torch.Tensor, group: ComponentGroup) -> torch.Tensor:
    """(batch, size): captum broadcasts a group's value over its elements; take it at the first position."""
    channels = attribution.movedim(group.channel_dim, 1) if attribution.dim() > 2 else attribution
    first = channels.flatten(2)[:, :, 0] if channels.dim() > 2 else channels
    return first[:, ::group.unit]


class _Quantity(nn.Module):
    """Per sample, the ablation's quantity: the true-class logit, or minus the cross-entropy of the logits
    restricted to the run's classes. The targets travel as a forward argument, which captum expands for
    ``perturbations_per_eval`` (captum 0.9.0's LayerFeatureAblation does not expand a tensor ``target``)."""

    def __init__(self, model: nn.Module, quantity: str, class_ids, task: Task) -> None:
        super().__init__()
        self.model = model
        self.quantity = quantity
        self.class_ids = torch.as_tensor(list(class_ids))
        self.task = task

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.model(inputs)
        if self.quantity == "logit":
            return self.task.target_outputs(logits, targets)
        return self.task.log_likelihood(logits, targets, self.class_ids.to(logits.device))


def ablation_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext | None = None,
    quantity: str = "logit", aggregation: str = "signed", normalize: str = "none", batch_components: int = 16,
) -> dict[str, torch.Tensor]:
    """The measured drop of ``quantity`` when one component is zeroed at its site, averaged over the
    reference samples: ``score(c) = mean_i [q(x_i) - q(x_i with c zeroed)]`` (captum LayerFeatureAblation,
    ``batch_components`` components per forward pass). ``aggregation=abs`` averages |drop| instead."""
    from captum.attr import LayerFeatureAblation

    if quantity not in ABLATION_QUANTITIES:
        raise ConfigError(f"ablation: unknown quantity '{quantity}'; choose one of {', '.join(ABLATION_QUANTITIES)}.")
    context = context or RunContext.seeded(0, reference.device)
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    modules = dict(model.named_modules())
    forward = _Quantity(model, quantity, reference.class_ids, reference.task)
    ranks: dict[str, int] | None = None
    with captum_ready(model), torch.no_grad():
        for inputs, targets in context.track(reference.batches()):
            if ranks is None:
                ranks = _site_ranks(model, components, inputs)
            relevances = {}
            for group in components.groups:
                attribution = LayerFeatureAblation(forward, modules[group.site]).attribute(
                    inputs, additional_forward_args=(targets,),
                    layer_mask=_layer_mask(group, ranks[group.name], inputs.device),
                    attribute_to_layer_input=group.at_input, perturbations_per_eval=batch_components)
                relevances[group.name] = _one_per_component(attribution, group)
            aggregator.add(relevances)
    return aggregator.scores()

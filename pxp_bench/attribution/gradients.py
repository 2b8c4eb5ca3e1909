"""Gradient x activation scores at the components' sites: ``taylor``, latent ``ig`` and ``smoothgrad``.

PROTOCOL section 3, with y the true-class logit (a language model's: the summed logits of the true next
tokens, and its token embeddings are the input x that ig and smoothgrad scale and perturb) and a the
component's tensor:
- taylor:     r_i(c) = sum_pos a * dy/da                              at x_i
- ig:         r_i(c) = sum_pos a(x_i) * mean_k dy/da at (k/m) x_i     k = 1..m (zero baseline)
- smoothgrad: r_i(c) = mean_k sum_pos (a * dy/da) at x_i + noise_k     noise ~ N(0, (sigma * range(x_i))^2)

These quantities carry the logit (for a bias-free piecewise-linear network a layer's a * dy/da sums to
y), which is ``init=logit``, the default; ``init=one`` divides each sample's relevances by its logit at
x_i and skips samples whose logit is near zero (`pxp_bench.attribution.aggregate.init_weights`).

Why hand-written hooks rather than captum's LayerIntegratedGradients / NoiseTunnel: captum's layer
methods attribute one layer per call (several layers at once fail), so scoring every layer would cost
one set of m passes per layer; here every layer's scores come from the same m batched passes.
captum's layer IG checks this implementation in the tests.
"""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.attribution.aggregate import RelevanceAggregator, init_weights
from pxp_bench.attribution.capture import SiteTensors, captured_sites
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import Components
from pxp_bench.tasks.base import Task
from pxp_bench.tasks.classification import CLASSIFICATION_TASK


def site_gradients(
    model: nn.Module, sites: SiteTensors, inputs: torch.Tensor, targets: torch.Tensor,
    task: Task = CLASSIFICATION_TASK,
) -> tuple[list[torch.Tensor], tuple[torch.Tensor, ...], torch.Tensor]:
    """One forward + backward: the site activations, dy/da at each, and the (detached) logits; y is the
    ``task``'s target output (`pxp_bench.attribution.reference.ReferenceSet.target_outputs`)."""
    sites.clear()
    logits = model(inputs.detach().requires_grad_(inputs.is_floating_point()))
    target_logits = task.target_outputs(logits, targets)
    activations = sites.flat()
    gradients = torch.autograd.grad(target_logits.sum(), activations)
    return [a.detach() for a in activations], gradients, logits.detach()


def taylor_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    aggregation: str = "abs", normalize: str = "none", init: str = "logit",
) -> dict[str, torch.Tensor]:
    """First-order Taylor (Molchanov et al.): activation x gradient of the true-class logit."""
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    with captured_sites(model, components) as sites, torch.enable_grad():
        for inputs, targets in context.track(reference.batches()):
            activations, gradients, logits = site_gradients(model, sites, inputs, targets, reference.task)
            relevances = sites.per_sample([a * g for a, g in zip(activations, gradients)], aggregator.per_position)
            aggregator.add(relevances, init_weights(logits, targets, reference.class_ids, init, reference.task))
    return aggregator.scores()


def ig_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    n_steps: int = 20, aggregation: str = "abs", normalize: str = "none", init: str = "logit",
) -> dict[str, torch.Tensor]:
    """Latent Integrated Gradients with a zero input baseline, right Riemann sum over m steps."""
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    with captured_sites(model, components) as sites, torch.enable_grad():
        for inputs, targets in context.track(reference.batches()):
            inputs = reference.task.continuous_inputs(model, inputs).detach()  # token ids: their embeddings
            summed: list[torch.Tensor] | None = None
            for step in range(1, n_steps + 1):
                activations, gradients, logits = site_gradients(model, sites, inputs * (step / n_steps), targets,
                                                                reference.task)
                summed = list(gradients) if summed is None else [s + g for s, g in zip(summed, gradients)]
            # the last step is x_i itself: its activations and logits are a(x_i) and y(x_i)
            relevances = sites.per_sample([a * s / n_steps for a, s in zip(activations, summed)],
                                          aggregator.per_position)
            aggregator.add(relevances, init_weights(logits, targets, reference.class_ids, init, reference.task))
    return aggregator.scores()


def _noise(context: RunContext, start: int, inputs: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Standard normal noise per sample from the run's sampler stream: independent of batching."""
    draws = []
    for offset in range(len(inputs)):
        generator = context.sample_generator(start + offset)
        draws.append(torch.randn((n_samples, *inputs.shape[1:]), generator=generator))
    return torch.stack(draws, dim=1).to(inputs.device, inputs.dtype)  # (n_samples, batch, ...)


def smoothgrad_scores(
    model: nn.Module, components: Components, reference: ReferenceSet, context: RunContext,
    sigma: float = 0.15, n_samples: int = 20, aggregation: str = "abs", normalize: str = "none", init: str = "logit",
) -> dict[str, torch.Tensor]:
    """SmoothGrad of activation x gradient: per position, the mean over noisy copies of each reference
    sample (so ``abs_per_position`` takes |.| of the smoothed relevance)."""
    aggregator = RelevanceAggregator(components, aggregation, normalize, context.diagnostics)
    with captured_sites(model, components) as sites, torch.enable_grad():
        for start, inputs, targets in context.track(reference.indexed_batches()):
            inputs = reference.task.continuous_inputs(model, inputs).detach()  # token ids: their embeddings
            flat = inputs.flatten(1)
            scale = sigma * (flat.max(dim=1).values - flat.min(dim=1).values)
            scale = scale.view(-1, *([1] * (inputs.dim() - 1)))
            noise = _noise(context, start, inputs, n_samples)
            summed: list[torch.Tensor] | None = None
            for draw in noise:
                activations, gradients, _ = site_gradients(model, sites, inputs + scale * draw, targets, reference.task)
                products = [a * g for a, g in zip(activations, gradients)]
                summed = products if summed is None else [s + p for s, p in zip(summed, products)]
            relevances = sites.per_sample([s / n_samples for s in summed], aggregator.per_position)
            with torch.no_grad():
                clean_logits = model(inputs)
            aggregator.add(relevances, init_weights(clean_logits, targets, reference.class_ids, init, reference.task))
    return aggregator.scores()

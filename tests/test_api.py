"""The plugin author's toolbox (`pxp_bench.api`): weights and gradients regrouped per component, the run's
classes and their log-likelihood, the grad mode a method scores under, and `pxp_bench.testing.fresh_plugins`."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from pxp_bench import MethodSpec
from pxp_bench.api import LabelledTensors, ReferenceSet, discover_components, producing_weights, producing_weights_of
from pxp_bench.lm.loading import build_embedded_lm
from pxp_bench.models.zoo import build_zoo_model
from pxp_bench.plugins import LOAD_ENV, Plugins, get_plugins
from pxp_bench.tasks.language_modelling import LANGUAGE_MODELLING_TASK
from pxp_bench.testing import check_method, fresh_plugins

BUILTINS = Plugins(load_external=False)
CPU = torch.device("cpu")


def gradient_x_weight(model, components, reference, context):
    """|sum of gradient x weight| over each component's producing weights: the first-order change of the
    loss when the component's weights are removed (docs/plugins.md shows this criterion)."""
    params = [p for p in model.parameters() if p.requires_grad]
    sums = [torch.zeros_like(p) for p in params]
    with torch.enable_grad():
        for inputs, targets in context.track(reference.batches()):
            loss = -reference.log_likelihood(model(inputs), targets).sum()
            for total, grad in zip(sums, torch.autograd.grad(loss, params, allow_unused=True)):
                if grad is not None:
                    total += grad
    grad_of = {id(p): total for p, total in zip(params, sums)}
    modules = dict(model.named_modules())
    return {group.name: producing_weights_of(modules[group.name], group.size, lambda w: grad_of[id(w)] * w.detach())
            .flatten(1).sum(dim=1).abs().float().cpu()
            for group in components.groups}


def _groups(name: str, kind: str):
    loaded = build_embedded_lm(name) if name == "tiny-llama" else build_zoo_model(name)
    model = loaded.module.eval()
    example = torch.zeros(1, *loaded.input_shape, dtype=torch.long if name == "tiny-llama" else torch.float32)
    return model, discover_components(model, kind, example)


@pytest.mark.parametrize("name, kind", [("digits-vgg", "filters"), ("digits-vgg", "neurons"), ("digits-vit", "heads"),
                                        ("digits-vit", "neurons"), ("tiny-llama", "heads"), ("tiny-llama", "neurons")])
def test_producing_weights_of_groups_any_per_weight_tensor_as_producing_weights_groups_weights(name, kind):
    model, components = _groups(name, kind)
    modules = dict(model.named_modules())
    for group in components.groups:
        module = modules[group.name]
        weights = producing_weights(module, group.size)
        assert weights.shape[0] == group.size
        same = producing_weights_of(module, group.size, lambda w: w.detach())
        torch.testing.assert_close(same, weights, rtol=0, atol=0)
        doubled = producing_weights_of(module, group.size, lambda w: 2 * w.detach())
        torch.testing.assert_close(doubled, 2 * weights, rtol=0, atol=0)


def test_a_gradient_is_regrouped_per_head_of_packed_attention():
    model, components = _groups("digits-vit", "heads")
    group = components.groups[0]
    attention = dict(model.named_modules())[group.name]  # nn.MultiheadAttention: q, k, v rows packed
    grad = torch.randn_like(attention.in_proj_weight)
    per_head = producing_weights_of(attention, group.size, lambda w: grad)
    width = attention.embed_dim
    head_dim = width // group.size
    for head in range(group.size):
        rows = [grad[part * width + head * head_dim:part * width + (head + 1) * head_dim] for part in range(3)]
        torch.testing.assert_close(per_head[head], torch.stack(rows), rtol=0, atol=0)


def test_producing_weights_of_refuses_a_tensor_of_another_shape():
    model, components = _groups("digits-vgg", "filters")
    group = components.groups[0]
    module = dict(model.named_modules())[group.name]
    with pytest.raises(ValueError, match=r"returned NoneType for a weight of shape"):
        producing_weights_of(module, group.size, lambda w: w.grad)  # no backward pass: .grad is None
    with pytest.raises(ValueError, match=r"returned \(3,\)"):
        producing_weights_of(module, group.size, lambda w: torch.zeros(3))


def test_a_gradient_x_weight_criterion_scores_filters_neurons_and_heads():
    spec = MethodSpec(name="grad-x-weight", score=gradient_x_weight, summary="gradient x weight per component",
                      families=frozenset({"cnn", "transformer"}))
    check_method(spec, plugins=BUILTINS)


def test_log_likelihood_is_over_the_run_classes():
    logits = torch.randn(4, 10, requires_grad=True)
    targets = torch.tensor([2, 7, 5, 2])
    reference = ReferenceSet(LabelledTensors(torch.zeros(4, 1), targets.tolist()), [2, 5, 7], 4, CPU)
    log_likelihood = reference.log_likelihood(logits, targets)
    expected = -F.cross_entropy(logits[:, [2, 5, 7]], torch.tensor([0, 2, 1, 0]), reduction="none")
    torch.testing.assert_close(log_likelihood, expected)
    log_likelihood.sum().backward()  # differentiable: a loss for gradient criteria
    assert logits.grad[:, [0, 1, 3, 4, 6, 8, 9]].abs().sum() == 0


def test_log_likelihood_of_a_language_model_sums_the_next_tokens():
    logits = torch.randn(2, 5, 11)
    tokens = torch.randint(0, 11, (2, 5))
    reference = ReferenceSet(LabelledTensors(tokens, tokens), [0], 2, CPU, LANGUAGE_MODELLING_TASK)
    expected = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None]).squeeze(-1).sum(dim=1)
    torch.testing.assert_close(reference.log_likelihood(logits, tokens), expected)


def test_a_method_scores_with_grad_enabled_the_run_classes_a_list_of_int():
    """What docs/plugins.md promises about the score function's call: grad mode on, weights requiring grad,
    eval mode, ``class_ids`` a sorted list of int (one text class for a language model)."""
    from pxp_bench.benchmark import Benchmark, run_benchmark
    from pxp_bench.hookspecs import hookimpl

    seen = []

    def probe(model, components, reference, context):
        seen.append((torch.is_grad_enabled(), {p.requires_grad for p in model.parameters()}, model.training,
                     reference.class_ids))
        return {group.name: torch.arange(group.size, dtype=torch.float32) for group in components.groups}

    class Probe:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="probe", score=probe, summary="records its call",
                                families=frozenset({"cnn", "lm"})))

    plugins = Plugins(load_external=False, extra=(Probe(),))
    for model, classes in (("digits-vgg", 3), ("tiny-llama", None)):
        run_benchmark(Benchmark(method="probe", model=model, n_classes=classes, rates=(0.0, 0.5), ref_per_class=2,
                                latency_repeats=0, evaluate="masked"), plugins=plugins)
    (grad_mode, requires_grad, training, class_ids), (*lm_call, lm_classes) = seen
    assert (grad_mode, requires_grad, training) == (True, {True}, False) and tuple(lm_call) == (True, {True}, False)
    assert type(class_ids) is list and len(class_ids) == 3 and class_ids == sorted(class_ids)
    assert all(type(c) is int for c in class_ids) and lm_classes == [0]


def test_fresh_plugins_reloads_the_process_wide_plugins_and_restores_the_selection():
    before = os.environ.get(LOAD_ENV)
    stale = get_plugins()
    with fresh_plugins(load="") as plugins:
        assert os.environ[LOAD_ENV] == "" and plugins is get_plugins() and plugins is not stale
    assert os.environ.get(LOAD_ENV) == before and get_plugins() is not plugins

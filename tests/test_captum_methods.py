"""captum's layer methods and true ablation (pxp_bench.attribution.captum_bridge) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from pxp_bench.attribution import captum_bridge
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import discover_components
from pxp_bench.data.protocol import draw_sets
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ConfigError
from pxp_bench.guards import model_state, state_changes
from pxp_bench.masking import keep_masks, masked
from pxp_bench.params import resolve_params
from pxp_bench.plugins import Plugins

BUILTINS = Plugins(load_external=False)
CPU = torch.device("cpu")
CAPTUM_METHODS = ("ablation", "conductance", "deeplift", "gradient_shap")


def score(method: str, model, components, reference, context: RunContext | None = None, family: str = "cnn",
          **params):
    spec = BUILTINS.methods.get(method)
    resolved = resolve_params(spec.space_for(family), owner=method, values=params)
    return spec.load_score()(model, components, reference, context or RunContext.seeded(0), **resolved)


def small_cnn(seed: int = 0, bias: bool = True, inplace: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=bias), nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 5, 3, padding=1, bias=bias), nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3, bias=bias),
    ).eval()


def small_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def reference_of(inputs: torch.Tensor, targets: list[int], batch_size: int = 16) -> ReferenceSet:
    return ReferenceSet(LabelledTensors(inputs, targets), [0, 1, 2], batch_size, CPU)


def images(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def measured_drops(model, components, inputs, targets, quantity="logit", class_ids=(0, 1, 2)):
    """Per component, the mean drop of the quantity when pxp-bench's own masking zeroes it alone."""
    targets = torch.as_tensor(targets)

    def q(logits):
        if quantity == "logit":
            return logits.gather(1, targets[:, None]).squeeze(1)
        restricted = logits[:, list(class_ids)]
        positions = torch.tensor([list(class_ids).index(int(t)) for t in targets])
        return -nn.functional.cross_entropy(restricted, positions, reduction="none")

    with torch.no_grad():
        clean = q(model(inputs))
        drops, flat = {}, 0
        for group in components.groups:
            values = []
            for _ in range(group.size):
                order = torch.tensor([flat] + [i for i in range(components.total) if i != flat])
                with masked(model, components, keep_masks(components, order, 1)):
                    values.append((clean - q(model(inputs))).mean())
                flat += 1
            drops[group.name] = torch.stack(values)
    return drops


# --- ablation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, model_fn, inputs", [
    ("filters", small_cnn, images()),
    ("neurons", small_mlp, torch.randn(5, 6, generator=torch.Generator().manual_seed(2))),
])
def test_ablation_is_the_mean_logit_drop_of_masking_each_component(kind, model_fn, inputs):
    model = model_fn()
    targets = [0, 1, 2, 1, 0]
    components = discover_components(model, kind, inputs[:1])
    expected = measured_drops(model, components, inputs, targets)
    # batch 2 and 3 components per pass: several batches and a ragged last perturbation pass
    scores = score("ablation", model, components, reference_of(inputs, targets, batch_size=2), batch_components=3)
    for name in components.names:
        torch.testing.assert_close(scores[name], expected[name].float(), rtol=1e-5, atol=1e-6)


def test_ablation_loss_is_the_rise_in_cross_entropy_over_the_run_classes():
    model = small_mlp(3)
    inputs = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    components = discover_components(model, "neurons", inputs[:1])
    targets = [0, 2, 2, 0]
    reference = ReferenceSet(LabelledTensors(inputs, targets), [0, 2], 4, CPU)  # class 1 is not in the run
    expected = measured_drops(model, components, inputs, targets, quantity="loss", class_ids=(0, 2))
    scores = captum_bridge.ablation_scores(model, components, reference, RunContext.seeded(0), quantity="loss")
    for name in components.names:
        torch.testing.assert_close(scores[name], expected[name].float(), rtol=1e-5, atol=1e-6)
    absolute = captum_bridge.ablation_scores(model, components, reference, quantity="loss", aggregation="abs")
    assert all((absolute[n] >= scores[n].abs() - 1e-6).all() for n in components.names)


def test_ablation_of_vit_heads_matches_masking_one_head(digits, zoo_model):
    model = zoo_model("digits-vit")
    sets = draw_sets(digits, n_classes=3, ref_per_class=2, tune_per_class=0, seed=0)
    data = Subset(digits.train, sets.reference)
    inputs = torch.stack([data[i][0] for i in range(len(data))])
    targets = [int(data[i][1]) for i in range(len(data))]
    components = discover_components(model, "heads", inputs[:1])
    assert components.groups[0].unit > 1  # a head spans several channels
    before = model_state(model, exact=True)
    scores = score("ablation", model, components, ReferenceSet(data, sets.classes, 4, CPU), family="transformer")
    assert state_changes(before, model) == []
    expected = measured_drops(model, components, inputs, targets)
    for name in components.names:
        torch.testing.assert_close(scores[name], expected[name].float(), rtol=1e-4, atol=1e-5)


# --- the gradient methods against captum called by hand ------------------------------------------------------

def test_conductance_equals_captum_per_layer_aggregated_by_hand():
    from captum.attr import LayerConductance

    model, inputs, targets = small_cnn(seed=2), images(4, seed=3), [0, 1, 2, 0]
    components = discover_components(model, "filters", inputs[:1])
    scores = score("conductance", model, components, reference_of(inputs, targets), n_steps=5)
    for name in components.names:
        attribution = LayerConductance(model, model.get_submodule(name)).attribute(
            inputs, baselines=torch.zeros_like(inputs), target=targets, n_steps=5, method="riemann_trapezoid")
        expected = attribution.sum(dim=(2, 3)).abs().mean(dim=0).detach()
        torch.testing.assert_close(scores[name], expected, rtol=1e-5, atol=1e-7)


def test_conductance_and_gradient_shap_equal_delta_activation_times_gradient_on_a_linear_net():
    """Without nonlinearities dy/da is constant along the path: both are (a(x) - a(0)) * dy/da, whatever the
    steps or random draws."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 3)).eval()
    inputs = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    targets = [2, 0, 1]
    components = discover_components(model, "neurons", inputs[:1])
    reference = reference_of(inputs, targets)
    conductance = score("conductance", model, components, reference, n_steps=3, aggregation="signed")
    shap = score("gradient_shap", model, components, reference, n_samples=4, aggregation="signed")
    with torch.no_grad():
        delta = model[0](inputs) - model[0](torch.zeros_like(inputs))  # (3, 6)
    gradient = (model[2].weight @ model[1].weight)[targets]  # dy_t / da, (3, 6)
    expected = (delta * gradient).mean(dim=0)
    torch.testing.assert_close(conductance["0"], expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(shap["0"], expected, rtol=1e-4, atol=1e-6)


def test_gradient_shap_equals_captum_per_sample_under_the_documented_seeds():
    from captum.attr import LayerGradientShap

    model, inputs, targets = small_cnn(seed=4), images(3, seed=5), [1, 2, 0]
    components = discover_components(model, "filters", inputs[:1])
    context = RunContext.seeded(7)
    scores = score("gradient_shap", model, components, reference_of(inputs, targets, batch_size=2), context,
                   n_samples=3, stdevs=0.1, aggregation="signed")
    for name in components.names:
        rows = []
        for i in range(3):
            with captum_bridge.seeded_global_rngs(captum_bridge.sample_seed(context, i), CPU):
                rows.append(LayerGradientShap(model, model.get_submodule(name)).attribute(
                    inputs[i:i + 1], baselines=torch.zeros_like(inputs[:1]), n_samples=3, stdevs=0.1,
                    target=targets[i:i + 1]).sum(dim=(2, 3)))
        torch.testing.assert_close(scores[name], torch.cat(rows).mean(dim=0).detach(), rtol=1e-5, atol=1e-7)


def test_gradient_shap_is_deterministic_per_seed_and_leaves_the_global_rngs_alone():
    model, inputs, targets = small_cnn(seed=6), images(4, seed=6), [0, 1, 2, 1]
    components = discover_components(model, "filters", inputs[:1])

    def run(seed: int, batch_size: int = 16):
        return score("gradient_shap", model, components, reference_of(inputs, targets, batch_size),
                     RunContext.seeded(seed), n_samples=3, stdevs=0.2)

    first, again, other_batching, other_seed = run(0), run(0), run(0, batch_size=3), run(1)
    assert all(torch.equal(first[n], again[n]) for n in components.names)
    assert all(torch.allclose(first[n], other_batching[n], rtol=1e-5, atol=1e-7) for n in components.names)
    assert any(not torch.allclose(first[n], other_seed[n]) for n in components.names)
    # the global RNGs: torch's as after merely reading the reference data once (a DataLoader draws its base
    # seed from it), numpy's untouched
    torch.manual_seed(123)
    list(reference_of(inputs, targets).batches())
    expected_torch = torch.get_rng_state()
    torch.manual_seed(123)
    np.random.seed(123)
    numpy_state = np.random.get_state()
    run(0)
    assert torch.equal(torch.get_rng_state(), expected_torch)
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]


def test_deeplift_equals_activation_times_gradient_on_a_bias_free_relu_net():
    """Zero baseline, no biases: every pre-activation is 0 at the baseline, the rescale multiplier of a ReLU is
    relu(z) / z = its gradient, and a(0) = 0, so DeepLift at a layer is a * dy/da (the Taylor score)."""
    model, inputs, targets = small_cnn(seed=8, bias=False), images(5, seed=8), [2, 1, 0, 0, 1]
    components = discover_components(model, "filters", inputs[:1])
    reference = reference_of(inputs, targets)
    deeplift = score("deeplift", model, components, reference, aggregation="signed")
    taylor = score("taylor", model, components, reference, aggregation="signed", init="logit")
    for name in components.names:
        torch.testing.assert_close(deeplift[name], taylor[name], rtol=1e-4, atol=1e-6)


def test_deeplift_differs_from_taylor_where_the_rescale_rule_matters():
    model, inputs, targets = small_cnn(seed=9, bias=True), images(5, seed=9), [2, 1, 0, 0, 1]
    components = discover_components(model, "filters", inputs[:1])
    reference = reference_of(inputs, targets)
    deeplift = score("deeplift", model, components, reference, aggregation="signed")
    taylor = score("taylor", model, components, reference, aggregation="signed", init="logit")
    assert not torch.allclose(deeplift["0"], taylor["0"], rtol=1e-3)
    # completeness: each layer's attributions sum to y(x) - y(0), averaged over the samples
    with torch.no_grad():
        t = torch.tensor(targets)[:, None]
        expected = (model(inputs).gather(1, t) - model(torch.zeros_like(inputs)).gather(1, t)).mean()
    for name in components.names:
        assert float(deeplift[name].sum()) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)


class ReusedReLU(nn.Module):
    """One ReLU module called twice per forward pass, as torchvision's BasicBlock does."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(10)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x):
        return self.fc(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


def test_deeplift_handles_a_reused_inplace_relu_and_restores_it():
    model, inputs, targets = ReusedReLU().eval(), images(4, seed=11), [0, 1, 2, 0]
    components = discover_components(model, "filters", inputs[:1])
    reference = reference_of(inputs, targets)
    before = model_state(model, exact=True)
    relu = model.relu
    deeplift = score("deeplift", model, components, reference, aggregation="signed")
    assert state_changes(before, model) == []
    assert model.relu is relu and relu.inplace is True and "input" not in vars(relu)
    taylor = score("taylor", model, components, reference, aggregation="signed", init="logit")
    for name in components.names:
        torch.testing.assert_close(deeplift[name], taylor[name], rtol=1e-4, atol=1e-6)


def test_deeplift_refuses_an_activation_without_a_captum_rule():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.GELU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).eval()
    components = discover_components(model, "filters", images(1))
    with pytest.raises(ConfigError, match="no rule for GELU"):
        score("deeplift", model, components, reference_of(images(2), [0, 1]))
    assert BUILTINS.methods.get("deeplift").families == frozenset({"cnn"})


# --- the model is left as found ------------------------------------------------------------------------------

@pytest.mark.parametrize("method", CAPTUM_METHODS)
def test_each_method_leaves_an_inplace_model_exactly_as_found(method):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3),
    ).eval()
    inputs, targets = images(4, seed=12), [0, 1, 2, 0]
    components = discover_components(model, "filters", inputs[:1])
    before = model_state(model, exact=True)
    params = {"n_steps": 2} if method == "conductance" else {"n_samples": 2} if method == "gradient_shap" else {}
    scores = score(method, model, components, reference_of(inputs, targets, batch_size=3), **params)
    assert state_changes(before, model) == []
    assert model[2].inplace and model[4].inplace
    assert all(torch.isfinite(s).all() for s in scores.values())


def test_the_model_is_restored_when_captum_raises():
    model = small_cnn(seed=13, inplace=True)
    components = discover_components(model, "filters", images(1))
    before = model_state(model, exact=True)
    bad = ReferenceSet(LabelledTensors(images(2), [0, 7]), [0, 1, 2], 2, CPU)  # target 7 of 3 logits
    with pytest.raises(Exception):
        score("deeplift", model, components, bad)
    assert state_changes(before, model) == []
    assert model[1].inplace and model[3].inplace
    assert all(set(vars(m)) == set(vars(small_cnn(seed=13, inplace=True)[i])) for i, m in enumerate(model))


# --- registration (the conformance kit runs on them in test_conformance.py) ----------------------------

def test_the_methods_are_registered_without_importing_captum():
    import subprocess
    import sys

    code = ("import sys; from pxp_bench.plugins import Plugins; p = Plugins(load_external=False); "
            "assert {'ablation', 'conductance', 'deeplift', 'gradient_shap'} <= set(p.methods.names()); "
            "assert 'captum' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PXP_BENCH_LOAD_PLUGINS": "", "PATH": ""})


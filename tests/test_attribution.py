"""Attribution methods checked against their theory on real small networks (PROTOCOL section 3)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import Subset

from helpers import has_hooks, state_snapshot
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import discover_components
from pxp_bench.data.protocol import draw_sets
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import ComponentError, ConfigError
from pxp_bench.params import grid_size, resolve_params
from pxp_bench.plugins import Plugins

BUILTINS = Plugins(load_external=False)
CPU = torch.device("cpu")
GRADIENT_METHODS = ("taylor", "ig", "smoothgrad", "lrp")


def score(method: str, model, components, reference, context: RunContext | None = None, **params):
    spec = BUILTINS.methods.get(method)
    resolved = resolve_params(spec.params, owner=method, values=params)
    return spec.load_score()(model, components, reference, context or RunContext.seeded(0), **resolved)


def bias_free_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3, bias=False),
    ).eval()


def image_reference(n: int = 6, batch_size: int = 16, targets: list[int] | None = None) -> ReferenceSet:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(n, 1, 8, 8, generator=generator)
    return ReferenceSet(LabelledTensors(inputs, targets or [i % 3 for i in range(n)]), [0, 1, 2],
                        batch_size, CPU)


def per_layer_sums(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(s.double().sum()) for name, s in scores.items()}


def test_lrp_epsilon_conserves_relevance_per_layer():
    model = bias_free_cnn()
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    for n in (1, 5):
        scores = score("lrp", model, components, image_reference(n), epsilon=1e-9,
                       aggregation="signed")
        for name, total in per_layer_sums(scores).items():
            assert total == pytest.approx(1.0, abs=1e-3), name


def test_lrp_zplus_relevances_are_non_negative(digits, zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=None, ref_per_class=1, tune_per_class=0, seed=0)
    for index in sets.reference[:3]:
        reference = ReferenceSet(Subset(digits.train, [index]), sets.classes, 1, CPU)
        scores = score("lrp", model, components, reference, low="zplus", mid="zplus", high="zplus",
                       fc="zplus", aggregation="signed")
        assert all(bool((s >= 0).all()) for s in scores.values())


def test_lrp_alpha2beta1_matches_its_definition_on_a_small_layer():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)).eval()
    x = torch.rand(1, 5)
    reference = ReferenceSet(LabelledTensors(x, [1]), [0, 1], 1, CPU)
    components = discover_components(model, "neurons", x)
    scores = score("lrp", model, components, reference, fc="alpha2beta1", aggregation="signed")
    hidden = torch.relu(model[0](x))[0]
    contributions = hidden * model[2].weight[1]  # z_k = h_k w_k1 towards the target output 1
    positive, negative = contributions.clamp(min=0), contributions.clamp(max=0)
    expected = 2 * positive / positive.sum() - 1 * negative / negative.sum()
    torch.testing.assert_close(scores["0"], expected.detach(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_scores_do_not_depend_on_the_batch_size(method, digits, zoo_model):
    """In float64, so that float32 kernels choosing other algorithms per batch size add no noise."""
    model = zoo_model("digits-resnet").double()
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32, dtype=torch.float64))
    sets = draw_sets(digits, n_classes=4, ref_per_class=4, tune_per_class=0, seed=0)
    data = LabelledTensors(digits.train.inputs[sets.reference].double(),
                           [digits.train.targets[i] for i in sets.reference])
    extra = {"n_steps": 4} if method == "ig" else {"n_samples": 3} if method == "smoothgrad" else {}

    def run(batch_size: int):
        return score(method, model, components, ReferenceSet(data, sets.classes, batch_size, CPU), **extra)

    one, sixteen = run(1), run(16)
    for name in components.names:
        torch.testing.assert_close(one[name], sixteen[name], rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_init_logit_differs_from_init_one_by_the_logit(method):
    model = bias_free_cnn(seed=2)
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    reference = image_reference(1)
    extra = {"n_steps": 3} if method == "ig" else {"n_samples": 2} if method == "smoothgrad" else {}
    one = score(method, model, components, reference, init="one", aggregation="signed", **extra)
    logit = score(method, model, components, reference, init="logit", aggregation="signed", **extra)
    x, target = reference.dataset[0]
    with torch.no_grad():
        y = model(x[None])[0, target]
    for name in components.names:
        torch.testing.assert_close(logit[name], one[name] * y, rtol=1e-4, atol=1e-7)


def test_latent_ig_is_complete_at_the_first_layer():
    """Bias-free: a(0) = 0 and f(0) = 0, so the first layer's component IG sums to f(x)."""
    model = bias_free_cnn(seed=4)
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    reference = image_reference(1, targets=[2])
    scores = score("ig", model, components, reference, n_steps=400, init="logit", aggregation="signed")
    x, target = reference.dataset[0]
    with torch.no_grad():
        fx = model(x[None])[0, target]
    first = components.names[0]
    assert float(scores[first].sum()) == pytest.approx(float(fx), rel=0.02, abs=1e-4)


def test_latent_ig_agrees_with_captum_layer_ig():
    from captum.attr import LayerIntegratedGradients

    model = bias_free_cnn(seed=5)
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    reference = image_reference(3, targets=[0, 1, 2])
    ours = score("ig", model, components, reference, n_steps=8, init="logit", aggregation="signed")
    inputs = torch.stack([reference.dataset[i][0] for i in range(3)])
    layer = model[2]  # second conv; bias-free, so a(0) = 0 as our formula assumes
    captum_ig = LayerIntegratedGradients(model, layer)
    per_sample = captum_ig.attribute(inputs, baselines=torch.zeros_like(inputs), target=[0, 1, 2],
                                     n_steps=8, method="riemann_right").sum(dim=(2, 3))
    torch.testing.assert_close(ours["2"], per_sample.mean(dim=0).detach(), rtol=1e-4, atol=1e-6)


def test_lrp_leaves_the_resnet_as_it_was(digits, zoo_model):
    model = zoo_model("digits-resnet")
    before = state_snapshot(model)
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=3, ref_per_class=2, tune_per_class=0, seed=0)
    reference = ReferenceSet(Subset(digits.train, sets.reference), sets.classes, 8, CPU)
    score("lrp", model, components, reference, low="gamma", mid="alpha2beta1")
    after = model.state_dict()
    assert list(before) == list(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert not has_hooks(model)
    for block in (model.layer1, model.layer2, model.layer3):
        assert "forward" not in vars(block) and not hasattr(block, "canonizer_sum")
    assert model.layer1.conv1.bias is None


def test_rule_choices_change_the_scores(digits, zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=3, ref_per_class=2, tune_per_class=0, seed=0)
    reference = ReferenceSet(Subset(digits.train, sets.reference), sets.classes, 8, CPU)
    epsilon = score("lrp", model, components, reference)
    low_gamma = score("lrp", model, components, reference, low="gamma")
    assert not torch.allclose(epsilon["features.0"], low_gamma["features.0"])
    torch.testing.assert_close(epsilon["features.14"], low_gamma["features.14"])  # high group unchanged


def test_a_batchnorm_that_cannot_be_merged_is_named_in_one_warning():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).eval()
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score("lrp", model, components, image_reference(2))
    messages = [str(w.message) for w in caught if "BatchNorm" in str(w.message)]
    assert len(messages) == 1 and "modules 0 " in messages[0]


def test_lrp_search_space_and_presets():
    spec = BUILTINS.methods.get("lrp")
    assert grid_size(spec.params) == 4 ** 4 * 3 == 768  # four group rules x three aggregations
    yeom = resolve_params(spec.params, owner="lrp", preset=spec.presets["yeom"])
    assert {yeom[g] for g in ("low", "mid", "high", "fc")} == {"zplus"} and yeom["normalize"] == "layer"
    assert set(spec.preset_names()) == {"default", "epsilon", "yeom"}


@pytest.mark.parametrize("count, sizes", [(13, (4, 5, 4)), (20, (5, 10, 5)), (5, (2, 1, 2)), (2, (1, 0, 1)), (1, (1, 0, 0))])
def test_depth_groups_follow_the_protocol(count, sizes):
    from pxp_bench.attribution.lrp_rules import depth_groups

    names = [f"conv{i}" for i in range(count)]
    groups = depth_groups(names)
    assert tuple(len(groups[g]) for g in ("low", "mid", "high")) == sizes
    assert groups["low"] + groups["mid"] + groups["high"] == names


class CustomResidual(nn.Module):
    """A residual block zennit has no canonizer for: its sum is a plain tensor addition."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = x + torch.relu(self.body(x))
        return self.head(x.mean(dim=(2, 3)))


def test_unsplit_residual_sums_are_warned_about_but_torchvision_blocks_are_not(digits, zoo_model):
    torch.manual_seed(0)
    model = CustomResidual().eval()
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    with pytest.warns(UserWarning, match="adds tensors 1 time"):
        score("lrp", model, components, image_reference(2))
    resnet = zoo_model("digits-resnet")
    resnet_components = discover_components(resnet, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=3, ref_per_class=1, tune_per_class=0, seed=0)
    reference = ReferenceSet(Subset(digits.train, sets.reference), sets.classes, 8, CPU)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score("lrp", resnet, resnet_components, reference)


def test_lrp_epsilon_equals_gradient_times_activation_on_a_relu_network(digits, zoo_model):
    """For ReLU networks LRP-0/epsilon relevance at any layer is a * dy/da (biases included): a
    cross-check of the zennit backend against the taylor implementation on the trained zoo model."""
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32))
    sets = draw_sets(digits, n_classes=3, ref_per_class=2, tune_per_class=0, seed=0)
    reference = ReferenceSet(Subset(digits.train, sets.reference), sets.classes, 8, CPU)
    lrp = score("lrp", model, components, reference, epsilon=1e-12, aggregation="signed")
    taylor = score("taylor", model, components, reference, aggregation="signed", init="one")
    for name in components.names:
        torch.testing.assert_close(lrp[name], taylor[name], rtol=1e-3, atol=1e-5)


def test_an_input_site_sees_the_rule_of_its_own_module():
    """Heads live at an output projection's input; the relevance there must be that projection's
    rule (zplus here), not the plain gradient below zennit's input wrapper."""
    from zennit.composites import NameMapComposite
    from zennit.rules import ZPlus

    from pxp_bench.attribution.capture import captured_sites
    from pxp_bench.components import ComponentGroup, Components

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3, bias=False))
    x = torch.rand(1, 5)
    components = Components("heads", (ComponentGroup("0", "0", 5, channel_dim=-1, at_input=True),))
    composite = NameMapComposite([(("0",), ZPlus())])
    with composite.context(model), captured_sites(model, components) as sites:
        out = model(x.requires_grad_(True))
        (relevance,) = torch.autograd.grad(out, sites.flat(), grad_outputs=torch.tensor([[1.0, 0.0, 0.0]]))
    contributions = (x[0] * model[0].weight[0].clamp(min=0)).detach()
    torch.testing.assert_close(relevance[0], contributions / contributions.sum(), atol=1e-5, rtol=1e-4)


def test_defaults_follow_the_protocol_per_method_and_family():
    for method in ("taylor", "ig", "smoothgrad"):
        spec = BUILTINS.methods.get(method)
        assert resolve_params(spec.params, owner=method)["init"] == "logit"
    lrp = BUILTINS.methods.get("lrp")
    cnn, transformer = (resolve_params(lrp.space_for(f), owner="lrp") for f in ("cnn", "transformer"))
    assert (cnn["init"], cnn["aggregation"]) == ("one", "abs")
    assert (transformer["init"], transformer["aggregation"]) == ("one", "abs_per_position")
    assert all(BUILTINS.methods.get(m).space_for("transformer")["aggregation"].default == "abs_per_position"
               for m in GRADIENT_METHODS)


def test_abs_per_position_takes_the_absolute_value_per_token_after_the_heads_channels():
    from pxp_bench.attribution.capture import per_component
    from pxp_bench.components import ComponentGroup

    heads = ComponentGroup("attn", "attn.proj", size=2, channel_dim=-1, unit=2, at_input=True)
    # (batch 1, tokens 2, 2 heads x 2 channels); head 0 sums to 3 at token 0 and -4 at token 1
    value = torch.tensor([[[1.0, 2.0, 5.0, 0.0], [-2.0, -2.0, 0.0, 1.0]]])
    assert per_component(value, heads).tolist() == [[-1.0, 6.0]]
    assert per_component(value, heads, absolute=True).tolist() == [[7.0, 6.0]]
    filters = ComponentGroup("conv", "conv", size=1)
    image = torch.tensor([[[[1.0, -3.0], [2.0, 0.0]]]])
    assert per_component(image, filters).tolist() == [[0.0]]
    assert per_component(image, filters, absolute=True).tolist() == [[6.0]]


def test_abs_per_position_scores_are_at_least_the_abs_scores():
    model = bias_free_cnn(seed=3)
    components = discover_components(model, "filters", torch.zeros(1, 1, 8, 8))
    plain = score("taylor", model, components, image_reference(4), aggregation="abs")
    per_position = score("taylor", model, components, image_reference(4), aggregation="abs_per_position")
    for name in components.names:
        assert bool((per_position[name] >= plain[name] - 1e-6).all())
    assert any(not torch.allclose(per_position[n], plain[n]) for n in components.names)


@pytest.mark.parametrize("method", ("taylor", "ig", "smoothgrad"))
def test_init_one_skips_samples_whose_logit_is_near_zero_and_records_them(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3, bias=False)).eval()
    components = discover_components(model, "neurons", torch.zeros(1, 1, 2, 2))
    inputs = torch.rand(4, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    inputs[2] = 0.0  # a bias-free network gives all-zero logits here: nothing to divide by
    extra = {"n_steps": 3} if method == "ig" else {"n_samples": 2, "sigma": 0.0} if method == "smoothgrad" else {}

    def run(rows):
        reference = ReferenceSet(LabelledTensors(inputs[rows], [r % 3 for r in rows]), [0, 1, 2], 16, CPU)
        context = RunContext.seeded(0)
        return score(method, model, components, reference, context, init="one", **extra), context.diagnostics

    with_zero, diagnostics = run([0, 1, 2, 3])
    without, clean = run([0, 1, 3])
    assert diagnostics["near_zero_logits_skipped"] == 1 and clean["near_zero_logits_skipped"] == 0
    for name in components.names:
        torch.testing.assert_close(with_zero[name], without[name])
    with pytest.raises(ConfigError, match="all 1 reference samples.*init=logit"):
        run([2])


def test_an_unknown_lrp_rule_is_an_error_not_alpha2beta1():
    from pxp_bench.attribution.lrp_rules import rule_for

    with pytest.raises(ConfigError, match="unknown LRP rule 'zplsu'"):
        rule_for("zplsu", linear=False, epsilon=1e-6, gamma_conv=0.25, gamma_linear=0.05)


def test_a_failing_discovery_fails_lrp_instead_of_leaving_convs_without_a_rule():
    shared = nn.Conv2d(1, 1, 3, padding=1, bias=False)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = shared, nn.Linear(64, 3)

        def forward(self, x):
            return self.head(self.conv(self.conv(x)).flatten(1))

    model = Twice().eval()
    with pytest.raises(ComponentError, match="run more than once"):
        from pxp_bench.attribution.lrp import build_composite

        build_composite(model, torch.zeros(1, 1, 8, 8), {"low": "zplus", "mid": "zplus", "high": "zplus", "fc": "zplus"})


def test_the_near_zero_rule_is_relative_to_the_samples_own_logits():
    from pxp_bench.attribution.aggregate import init_weights

    logits = torch.tensor([[10.0, 0.05, 1.0, 99.0], [10.0, 0.05, 1.0, 99.0], [-2.0, 0.5, 0.001, 0.0]])
    targets = torch.tensor([1, 2, 1])  # class 3 is not among the run's classes: its logit does not count
    weights = init_weights(logits, targets, [0, 1, 2], "one")
    # 0.05 < 1 % of 10 -> skipped; 1.0 -> divided by; 0.5 >= 1 % of 2 -> divided by
    torch.testing.assert_close(weights, torch.tensor([0.0, 1.0, 2.0]))
    assert init_weights(logits, targets, [0, 1, 2], "logit") is None

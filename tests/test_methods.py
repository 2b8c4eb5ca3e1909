"""Every registered method x every zoo model x every component kind it supports, on real data."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from helpers import FAST_PARAMS, QUICK_RATES, has_hooks, state_snapshot, untimed
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.components import discover_components
from pxp_bench.data.protocol import draw_sets
from pxp_bench.errors import ComponentError
from pxp_bench.evaluate import prune_curve
from pxp_bench.masking import rank_components
from pxp_bench.params import resolve_params
from pxp_bench.plugins import Plugins
from pxp_bench.rates import DEFAULT_RATES, parse_rates

BUILTINS = Plugins(load_external=False)
CPU = torch.device("cpu")
EXAMPLE = torch.zeros(1, 1, 32, 32)


ZOO = [spec for spec in BUILTINS.models if spec.default_dataset == "digits"]  # the embedded zoo


def _combinations():
    for method in BUILTINS.methods:
        for model in ZOO:
            if model.family not in method.families:
                continue
            kinds = {"heads", "neurons"} if model.family == "transformer" else {"filters", "neurons"}
            for kind in sorted(method.components & kinds):
                yield pytest.param(method.name, model.name, kind, id=f"{method.name}-{model.name}-{kind}")


def _reference(digits, batch_size: int = 32, per_class: int = 4) -> ReferenceSet:
    sets = draw_sets(digits, n_classes=None, ref_per_class=per_class, tune_per_class=0, seed=0)
    return ReferenceSet(Subset(digits.train, sets.reference), sets.classes, batch_size, CPU)


@pytest.mark.matrix
@pytest.mark.parametrize("method, model_name, kind", list(_combinations()))
def test_every_method_scores_and_leaves_the_model_untouched(method, model_name, kind, digits, zoo_model):
    model = zoo_model(model_name)
    spec = BUILTINS.methods.get(method)
    params = resolve_params(spec.space_for(BUILTINS.models.get(model_name).family), owner=method,
                            values=FAST_PARAMS.get(method))
    try:
        components = discover_components(model, kind, EXAMPLE)
    except ComponentError:
        assert (model_name, kind) == ("digits-resnet", "neurons")  # a single Linear head: no hidden units
        return
    before = state_snapshot(model)
    # one reference sample per class: the contract, not an attribution's quality (the suite tests below)
    scores = spec.load_score()(model, components, _reference(digits, per_class=1), RunContext.seeded(0), **params)
    flat = torch.cat([scores[name] for name in components.names])
    assert torch.isfinite(flat).all() and flat.std() > 0
    order = rank_components(components, scores)
    loader = DataLoader(digits.eval, batch_size=256)
    points = prune_curve(model, components, order, QUICK_RATES, loader, list(range(10)), CPU)
    assert points[0].accuracy > 0.97 and len(points) == 3, points[0]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not has_hooks(model) and all(p.grad is None for p in model.parameters())
    assert all("forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize("method, model_name, kind", [
    ("taylor", "digits-vgg", "filters"), ("magnitude", "digits-resnet", "filters"), ("random", "digits-vgg", "neurons"),
])
def test_the_whole_pipeline_runs(method, model_name, kind):
    result = run_benchmark(Benchmark(model=model_name, method=method, components=kind, rates=QUICK_RATES),
                           plugins=BUILTINS)
    assert result.rates == list(QUICK_RATES) and result.curve[0]["accuracy"] > 0.97
    assert set(result.layers) and all(len(v) == 3 for v in result.layers.values())


def test_taylor_signed_and_layer_normalisation(digits, zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", EXAMPLE)
    score = BUILTINS.methods.get("taylor").load_score()
    absolute = score(model, components, _reference(digits), RunContext.seeded(0))
    signed = score(model, components, _reference(digits), RunContext.seeded(0), aggregation="signed")
    normalised = score(model, components, _reference(digits), RunContext.seeded(0), normalize="layer")
    for name in components.names:
        assert (absolute[name] >= signed[name].abs() - 1e-6).all()
        torch.testing.assert_close(normalised[name], absolute[name] / absolute[name].sum())
    assert any((signed[name] < 0).any() for name in components.names)


def test_magnitude_is_the_mean_absolute_kernel_weight(zoo_model):
    model = zoo_model("digits-vgg")
    components = discover_components(model, "filters", EXAMPLE)
    scores = BUILTINS.methods.get("magnitude").load_score()(model, components, None, RunContext.seeded(0))
    kernel = model.features[3].weight
    torch.testing.assert_close(scores["features.3"][5], kernel[5].abs().mean())


def test_same_seed_same_metrics_and_one_class_draw_for_every_method():
    results = {
        method: run_benchmark(Benchmark(method=method, n_classes=3, rates=QUICK_RATES, seed=4), plugins=BUILTINS)
        for method in ("random", "magnitude", "taylor")
    }
    again = run_benchmark(Benchmark(method="random", n_classes=3, rates=QUICK_RATES, seed=4), plugins=BUILTINS)
    assert untimed(again.metrics) == untimed(results["random"].metrics)
    assert untimed(again.curve) == untimed(results["random"].curve)
    assert len({tuple(r.classes) for r in results.values()}) == 1
    assert len({r.samples["reference_hash"] for r in results.values()}) == 1
    other_seed = run_benchmark(Benchmark(method="random", n_classes=3, rates=QUICK_RATES, seed=5), plugins=BUILTINS)
    assert other_seed.samples["reference_hash"] != results["random"].samples["reference_hash"]


@pytest.mark.suite
def test_the_suite_separates_informed_methods_from_random():
    """PROTOCOL's grid on digits-vgg filters, seeds 0-2: magnitude and taylor beat random by >= 0.05,
    lrp (default composite) by >= 0.1. Masked: the same accuracies as slimmed (test_slim), without the
    latency timing this test does not need."""
    mean_a_pr = {}
    for method in ("random", "magnitude", "taylor", "lrp"):
        runs = [run_benchmark(Benchmark(method=method, seed=seed, evaluate="masked"), plugins=BUILTINS)
                for seed in range(3)]
        mean_a_pr[method] = sum(r.metrics["a_pr"] for r in runs) / 3
    assert mean_a_pr["magnitude"] >= mean_a_pr["random"] + 0.05, mean_a_pr
    assert mean_a_pr["taylor"] >= mean_a_pr["random"] + 0.05, mean_a_pr
    assert mean_a_pr["lrp"] >= mean_a_pr["random"] + 0.1, mean_a_pr


@pytest.mark.suite
def test_the_suite_separates_lrp_from_random_on_the_vit():
    """digits-vit, the suite's grids (16 heads: 0, 1/16, ..., 15/16; neurons: the standard grid), seeds 0-2:
    lrp beats random by >= 0.05 on heads, >= 0.02 on neurons."""
    for kind, margin, rates in (("heads", 0.05, parse_rates("0:1:0.0625")), ("neurons", 0.02, DEFAULT_RATES)):
        mean = {method: sum(run_benchmark(Benchmark(model="digits-vit", method=method, components=kind, seed=seed,
                                                    evaluate="masked", rates=rates),
                                          plugins=BUILTINS).metrics["a_pr"] for seed in range(3)) / 3
                for method in ("random", "lrp")}
        assert mean["lrp"] >= mean["random"] + margin, (kind, mean)

"""pxp-bench-example, tested as a plugin author would: the conformance kit, then the commands."""

from __future__ import annotations

import json

import torch
from torch import nn
from typer.testing import CliRunner

from pxp_bench.api import ReferenceSet, RunContext, LabelledTensors, discover_components
from pxp_bench.cli import app
from pxp_bench.plugins import get_plugins
from pxp_bench.testing import check_dataset, check_method, check_model, check_optimizer
from pxp_bench_example.wanda import wanda_scores

RATES = "0,0.25,0.5,0.75"


def test_the_plugin_loads_through_its_entry_point():
    loaded = get_plugins()
    loaded.collect_all()
    info = loaded.infos["example"]
    assert (info.distribution, info.source, info.error) == ("pxp-bench-example", "entry point", None)
    assert info.registers == {"methods": ["wanda"], "models": ["faces-cnn"], "datasets": ["lfw-faces"],
                              "optimizers": ["example-random"]}


def test_it_passes_the_conformance_kit():
    check_method("wanda")
    check_model("faces-cnn")
    assert check_dataset("lfw-faces").num_classes == 2
    check_optimizer("example-random")


def test_wanda_is_weight_magnitude_times_input_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    inputs = torch.randn(5, 3)
    components = discover_components(model, "neurons", inputs[:1])
    reference = ReferenceSet(LabelledTensors(inputs, [0, 1, 0, 1, 0]), [0, 1], 2, torch.device("cpu"))
    scores = wanda_scores(model, components, reference, RunContext.seeded(0), compare="global")
    expected = model[0].weight.abs().double() @ inputs.double().norm(dim=0)
    torch.testing.assert_close(scores["0"], expected.float())
    magnitude = wanda_scores(model, components, reference, RunContext.seeded(0), exponent=0.0, compare="global")
    torch.testing.assert_close(magnitude["0"], model[0].weight.abs().sum(dim=1))
    # compared within the layer (the default): the rank of each unit's sum, as a fraction of the layer
    within = wanda_scores(model, components, reference, RunContext.seeded(0))
    ranks = expected.argsort().argsort().float() + 1
    torch.testing.assert_close(within["0"], ranks / 4)


def test_wanda_prunes_every_layer_at_the_same_rate():
    """Wanda never ranks one layer's weights against another's: at any rate each layer loses the same
    share of its filters (to within one filter), so no layer is emptied before the others."""
    from pxp_bench.benchmark import prepare
    from pxp_bench.masking import keep_masks, pruned_count, pruned_fractions, rank_components
    from pxp_bench.plan import Benchmark

    prepared = prepare(Benchmark(model="digits-vgg", method="wanda", n_classes=3, ref_per_class=3))
    components = prepared.components
    reference = ReferenceSet(prepared.samples("reference"), prepared.sets.classes, 16, prepared.device)
    scores = wanda_scores(prepared.model, components, reference, RunContext.seeded(0))
    global_order = rank_components(components, wanda_scores(prepared.model, components, reference,
                                                             RunContext.seeded(0), compare="global"))
    first = components.groups[0]  # the raw sums rank the first conv's filters below every other layer's
    assert pruned_fractions(keep_masks(components, global_order, first.size))[first.name] == 1.0
    order = rank_components(components, scores)
    for rate in (0.1, 0.3, 0.5, 0.9):
        fractions = pruned_fractions(keep_masks(components, order, pruned_count(rate, components.total)))
        for group in components.groups:
            assert abs(fractions[group.name] - rate) <= 1 / group.size + 1e-9, (rate, group.name)


def test_run_and_optimize_with_the_plugin(tmp_path):
    runner = CliRunner()
    run = runner.invoke(app, ["run", "--method", "wanda", "--model", "faces-cnn", "--rates", RATES,
                              "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    result = json.loads(next((tmp_path / "run").glob("*.json")).read_text())
    assert (result["method"], result["model"], result["dataset"]) == ("wanda", "faces-cnn", "lfw-faces")
    assert result["curve"][0]["accuracy"] > 0.9
    optimize = runner.invoke(app, ["optimize", "--method", "wanda", "--model", "faces-cnn", "--optimizer",
                                   "example-random", "--trials", "3", "--rates", RATES, "--out", str(tmp_path / "opt")])
    assert optimize.exit_code == 0, optimize.output
    assert set(json.loads(next((tmp_path / "opt").glob("*.best.json")).read_text())) == {"exponent", "compare"}

"""Speed targets of the core (report the figures in the README; never asserted as timed tests).

Run with ``make bench``. Under ``make test`` these run once each with timing disabled, as smoke tests.
- scoring + the 20-rate curve for ``digits-vgg`` with the defaults: target < 15 s on 2 CPU cores
  (process start-up and model / data loading excluded);
- ``pxp-bench --help``: target < 2 s.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader, Subset

from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.benchmark import Benchmark, plan_benchmark
from pxp_bench.components import discover_components
from pxp_bench.data.digits import load_digits_splits
from pxp_bench.data.protocol import draw_sets
from pxp_bench.evaluate import prune_curve
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.masking import rank_components
from pxp_bench.models.zoo import build_zoo_model
from pxp_bench.plugins import Plugins

CPU = torch.device("cpu")


@pytest.mark.parametrize("method", ["magnitude", "taylor"])
def test_score_and_curve_digits_vgg(benchmark, method):
    plugins = Plugins(load_external=False)
    plan = plan_benchmark(Benchmark(method=method), plugins)
    splits = load_digits_splits()
    model = build_zoo_model("digits-vgg").module
    sets = draw_sets(splits, n_classes=None, ref_per_class=10, tune_per_class=0, seed=0)
    reference = ReferenceSet(Subset(splits.train, sets.reference), sets.classes, 128, CPU)
    loader = DataLoader(Subset(splits.eval, sets.evaluation), batch_size=128)
    components = discover_components(model, "filters", torch.zeros(1, 1, 32, 32))
    score = plan.method.load_score()

    def score_and_curve():
        order = rank_components(components, score(model, components, reference, RunContext.seeded(0), **plan.params))
        return prune_curve(model, components, order, DEFAULT_RATES, loader, sets.classes, CPU)

    points = benchmark.pedantic(score_and_curve, rounds=3, iterations=1)
    assert len(points) == 20


def test_cli_help(benchmark):
    def help_once():
        return subprocess.run([sys.executable, "-m", "pxp_bench.cli", "--help"], capture_output=True, check=True)

    benchmark.pedantic(help_once, rounds=5, iterations=1)

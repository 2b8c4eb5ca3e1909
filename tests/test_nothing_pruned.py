"""No grid rate above 0 that prunes nothing: a per-layer cap under which no layer can give up a component,
or a custom grid whose smallest rate above 0 rounds to 0 pruned components, is refused in `prepare`
(before scoring) with the smallest workable value, as is the standard grid on fewer than 20 components;
capped repeats stay accepted."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from pxp_bench.benchmark import Benchmark, prepare, run_benchmark
from pxp_bench.cli import app
from pxp_bench.components import ComponentGroup, Components
from pxp_bench.errors import ConfigError
from pxp_bench.masking import pruned_count, rank_components
from pxp_bench.rates import DEFAULT_RATES, check_grid_prunes

QUICK = dict(model="digits-vgg", method="magnitude", n_classes=3, evaluate="masked", latency_repeats=0)
SIZES = [16, 16, 32, 32, 64]
"""digits-vgg's filters per layer (160 in all)."""


def _suggested(message: str, option: str) -> float:
    """The value a refusal proposes: the number after ``option`` (or after 'at least')."""
    tail = message.split(option, 1)[1].split()
    return float(tail[0])


def _components(sizes) -> Components:
    return Components("filters", tuple(ComponentGroup(f"l{i}", f"l{i}", n) for i, n in enumerate(sizes)))


@pytest.mark.parametrize("sizes", [SIZES, [4, 4, 4, 4], [3, 7], [5]])
def test_the_suggested_cap_is_the_smallest_that_lets_the_masking_prune_a_component(sizes):
    components = _components(sizes)
    scores = {g.name: torch.arange(g.size, dtype=torch.float32) for g in components.groups}
    tiny = 0.5 / max(sizes)
    assert len(rank_components(components, scores, max_layer_rate=tiny)) == 0  # nothing can ever be pruned
    with pytest.raises(ConfigError, match="lets no layer give up a component") as refused:
        check_grid_prunes((0.0, 0.5), sizes, tiny)
    assert "\n" not in str(refused.value)
    cap = _suggested(str(refused.value), "Use --max-layer-rate ")
    assert cap < 1
    assert len(rank_components(components, scores, max_layer_rate=cap)) >= 1  # the masking prunes at least one
    assert cap <= 1.01 / max(sizes)  # and not much more than needed: 1/largest rounded up
    check_grid_prunes((0.0, 0.5), sizes, cap)


def test_a_cap_is_useless_on_layers_of_one_component():
    with pytest.raises(ConfigError, match="drop --max-layer-rate"):
        check_grid_prunes((0.0, 0.5), [1, 1, 1], 0.9)


@pytest.mark.parametrize("total", [160, 336, 7])
def test_the_suggested_smallest_rate_is_the_smallest_that_prunes_a_component(total):
    with pytest.raises(ConfigError, match="prunes none of the model's") as refused:
        check_grid_prunes((0.0, 0.0001, 0.5), [total])
    rate = _suggested(str(refused.value), "at least ")
    assert pruned_count(rate, total) == 1 and rate <= 1.01 / total
    check_grid_prunes((0.0, rate, 0.5), [total])
    below = math.nextafter(rate * 0.99, 0)
    with pytest.raises(ConfigError):
        check_grid_prunes((0.0, below, 0.5), [total])


def test_the_standard_grid_is_refused_where_it_prunes_nothing_and_capped_repeats_are_not():
    with pytest.raises(ConfigError, match=r"the standard grid's smallest rate above 0, 0.05, prunes none of the "
                                          r"model's 16 components.* e.g. --rates 0:1:0.0625"):
        check_grid_prunes(DEFAULT_RATES, [4, 4, 4, 4])  # digits-vit's 16 heads
    check_grid_prunes(DEFAULT_RATES, [10, 10])  # 20 components: 0.05 prunes one
    check_grid_prunes((0.0, 0.25, 0.5, 0.75, 0.9), SIZES, 0.5)  # 0.5, 0.75 and 0.9 all prune the capped 80


def test_prepare_refuses_a_cap_that_prunes_nothing_before_scoring():
    with pytest.raises(ConfigError, match=r"--max-layer-rate 1e-09 .* Use --max-layer-rate 0.0157 or more \(1/64\)"):
        prepare(Benchmark(**QUICK, rates=(0.0, 0.5), max_layer_rate=1e-9))
    with pytest.raises(ConfigError, match=r"0.0001, prunes none of the model's 160 components.* at least 0.00625"):
        prepare(Benchmark(**QUICK, rates=(0.0, 0.0001, 0.5)))
    assert prepare(Benchmark(**QUICK, rates=(0.0, 0.00625, 0.5), max_layer_rate=0.0157)).components.total == 160


@pytest.mark.parametrize("args, message", [
    (["--max-layer-rate", "1e-9"], "Use --max-layer-rate 0.0157 or more"),
    (["--rates", "0,0.0001,0.5"], "smallest rate above 0 at least 0.00625"),
])
def test_run_and_optimize_refuse_in_one_line_and_leave_nothing(tmp_path, args, message):
    for command, extra in (("run", []), ("optimize", ["--tune-per-class", "5", "--trials", "2"])):
        out = tmp_path / command / "out"
        done = CliRunner().invoke(app, [command, "--method", "magnitude" if command == "run" else "taylor",
                                        "--classes", "3", "--out", str(out), *extra, *args])
        assert done.exit_code == 2, done.output
        assert message in done.output and "Traceback" not in done.output
        assert len([line for line in done.output.splitlines() if line.strip()]) <= 3  # one (wrapped) line
        assert not out.exists() or not any(out.rglob("*.*")), list(out.rglob("*"))


def test_a_suite_cell_with_a_useless_cap_fails_with_the_one_line(plugins, tmp_path):
    import dataclasses

    from helpers import TINY_SUITE
    from pxp_bench.suites.definition import load_suite
    from pxp_bench.suites.runner import run_suite

    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE.replace("[run]", "[run]\nmax_layer_rate = 1e-9", 1))
    suite = load_suite(str(path), plugins)
    suite = dataclasses.replace(suite, cells=suite.cells[:1])
    report = run_suite(suite, tmp_path / "out", plugins)
    ((_, error, _),) = report.failed
    assert report.done == 0 and "Use --max-layer-rate 0.0157 or more" in error


def test_the_recorded_pruned_count_is_what_the_masks_prune_under_the_cap():
    result = run_benchmark(Benchmark(**QUICK, rates=(0.0, 0.25, 0.5, 0.75, 0.9), max_layer_rate=0.5))
    sizes = {g.name: g.size for g in result.scored.groups}
    for index, point in enumerate(result.curve):
        pruned = sum(round(result.layers[name][index] * size) for name, size in sizes.items())
        assert point["pruned"] == pruned, point
    assert [p["pruned"] for p in result.curve] == [0, 40, 80, 80, 80]  # the cap: 80 of 160 at most
    assert result.curve[3]["correct"] == result.curve[2]["correct"] == result.curve[4]["correct"]

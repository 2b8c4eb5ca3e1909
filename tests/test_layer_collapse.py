"""Layer collapse (the first rate that empties a layer, in every record and on the leaderboard) and the
per-layer cap `--max-layer-rate` (issue 20)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from helpers import TINY_SUITE
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.cli import app
from pxp_bench.collapse import layer_collapse
from pxp_bench.components import ComponentGroup, Components
from pxp_bench.leaderboard.markdown import table_markdown
from pxp_bench.leaderboard.tables import group_tables
from pxp_bench.masking import keep_masks, pruned_count, pruned_fractions, rank_components
from pxp_bench.plugins import Plugins
from pxp_bench.suites.definition import load_suite

ROOT = Path(__file__).resolve().parents[1]
QUICK = dict(model="digits-vgg", method="magnitude", n_classes=3, rates=(0.0, 0.25, 0.5, 0.75, 0.9),
             evaluate="masked", latency_repeats=0)


def _three_layers() -> Components:
    return Components("filters", (ComponentGroup("a", "a", 4), ComponentGroup("b", "b", 2), ComponentGroup("c", "c", 4)))


def test_the_cap_keeps_at_least_one_minus_r_of_every_layer_and_the_sets_stay_nested():
    components = _three_layers()
    # layer a holds the four least relevant components, then b, then c
    scores = {"a": torch.tensor([0.1, 0.2, 0.3, 0.4]), "b": torch.tensor([0.5, 0.6]), "c": torch.tensor([0.7, 0.8, 0.9, 1.0])}
    assert rank_components(components, scores).tolist() == list(range(10))
    order = rank_components(components, scores, max_layer_rate=0.5)
    assert order.tolist() == [0, 1, 4, 6, 7]  # floor(0.5 * size) of each layer, in the global order
    previous: set[int] = set()
    for n in range(len(order) + 3):  # prefixes past the end prune what the cap allows, no more
        masks = keep_masks(components, order, n)
        fractions = pruned_fractions(masks)
        assert all(fraction <= 0.5 for fraction in fractions.values())
        pruned = set(torch.cat(list(masks.values())).logical_not().nonzero().flatten().tolist())
        assert previous <= pruned
        previous = pruned
    assert rank_components(components, scores, max_layer_rate=0.25).tolist() == [0, 6]  # b: floor(0.5) = 0


def test_layer_collapse_finds_the_first_emptied_layers():
    rates = [0.0, 0.3, 0.6, 0.9]
    layers = {"x": [0.0, 0.5, 1.0, 1.0], "y": [0.0, 0.2, 1.0, 1.0], "z": [0.0, 0.1, 0.2, 1.0]}
    assert layer_collapse(rates, layers) == (0.6, ["x", "y"])
    assert layer_collapse(rates, {"x": [0.0, 0.5, 0.9, 0.99]}) == (None, [])


def test_records_carry_the_collapse_rate_and_the_cap_prevents_it():
    free = run_benchmark(Benchmark(**QUICK))
    assert free.metrics["collapse_rate"] == layer_collapse(free.rates, free.layers)[0]
    assert free.metrics["collapse_rate"] is not None  # magnitude empties the high fan-in layers on digits-vgg
    assert free.samples["max_layer_rate"] is None
    capped = run_benchmark(Benchmark(**QUICK, max_layer_rate=0.8))
    assert capped.metrics["collapse_rate"] is None
    assert capped.samples["max_layer_rate"] == 0.8
    total = capped.scored.total
    caps = {g.name: int(0.8 * g.size + 1e-9) for g in capped.scored.groups}
    for point in capped.curve:
        assert point["pruned"] == min(pruned_count(point["rate"], total), sum(caps.values()))
    for name, fractions in capped.layers.items():
        assert max(fractions) <= 0.8 + 1e-9, name
    assert capped.metrics["a_pr"] != free.metrics["a_pr"]


def test_the_leaderboard_shows_collapse_and_never_mixes_caps_in_a_row():
    results = [run_benchmark(Benchmark(**QUICK, seed=seed, max_layer_rate=cap)).to_dict()
               for cap in (None, 0.8) for seed in (0, 1)]
    (table,) = group_tables(results)
    assert len(table.rows) == 2
    assert {row.fields["max layer rate"] for row in table.rows} == {None, 0.8}
    text = table_markdown(table)
    header = text.splitlines()[0].split(" | ")
    assert "layer collapse" in header and "max layer rate" in header
    cells = {line.split(" | ")[header.index("max layer rate")]: line.split(" | ")[header.index("layer collapse")]
             for line in text.splitlines()[2:]}
    assert cells["0.8"] == "none"
    expected = min(run["metrics"]["collapse_rate"] for run in results[:2])
    assert cells["default"] == f"{expected:.2f} (2/2)"


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "nan"])
def test_a_cap_outside_the_open_unit_interval_is_one_line(tmp_path, value):
    done = CliRunner().invoke(app, ["run", "--method", "magnitude", "--max-layer-rate", value, "--out", str(tmp_path)])
    assert done.exit_code == 2
    assert "--max-layer-rate must lie strictly between 0 and 1" in done.output
    assert "Traceback" not in done.output and not list(tmp_path.glob("*.json"))


TINY_KEYS_BEFORE_ISSUE_20 = ["2be9561e97eaf4c4", "33f47e96ba21d38f", "495ee76f96d0e488", "7f7b1f01ba60d049"]
"""The cell keys of `helpers.TINY_SUITE` computed by pxp-bench before `max_layer_rate` and `agreement`
existed (commit d443bc4)."""


def test_new_options_leave_earlier_cells_keys_alone_and_set_they_make_new_cells(plugins, tmp_path, monkeypatch):
    """Options added later stay out of a cell's key at their defaults, so the cells a suite ran before
    them are still found; set, they make new cells (the committed digits suite records agreement)."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    plain = load_suite(str(path), plugins)
    assert sorted(cell.key for cell in plain.cells) == TINY_KEYS_BEFORE_ISSUE_20
    for overrides in ({"max_layer_rate": 0.5}, {"agreement": True}):
        changed = load_suite(str(path), plugins, overrides=overrides)
        assert not {c.key for c in plain.cells} & {c.key for c in changed.cells}
    assert all(cell.benchmark().max_layer_rate == 0.5
               for cell in load_suite(str(path), plugins, overrides={"max_layer_rate": 0.5}).cells)
    committed = {p.stem for p in (ROOT / "leaderboard" / "results" / "cells").glob("*.json")}
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "pxp-bench-example")  # the digits suite names its wanda
    assert {cell.key for cell in load_suite("digits", Plugins()).cells} <= committed


def test_a_suite_refuses_a_cap_out_of_range(plugins, tmp_path):
    from pxp_bench.errors import ConfigError

    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE.replace("[run]", "[run]\nmax_layer_rate = 1.5", 1))
    with pytest.raises(ConfigError, match="max_layer_rate"):
        load_suite(str(path), plugins)

"""Agreement with ablation (issue 20): Spearman's rho and pruned-set overlaps of a method's scores with
ablation's on the same reference set, cached per setting."""

from __future__ import annotations

import json

import torch
from scipy.stats import spearmanr
from typer.testing import CliRunner

from pxp_bench.agreement import ABLATION_CACHE, agreement
from pxp_bench.benchmark import Benchmark, run_benchmark
from pxp_bench.cli import app
from pxp_bench.components import ComponentGroup, Components

QUICK = dict(model="digits-vgg", n_classes=3, ref_per_class=4, rates=(0.0, 0.5), evaluate="masked",
             latency_repeats=0, agreement=True)


def test_agreement_by_hand():
    components = Components("filters", (ComponentGroup("a", "a", 4), ComponentGroup("b", "b", 4)))
    ours = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([5.0, 6.0, 7.0, 8.0])}
    theirs = {"a": torch.tensor([2.0, 1.0, 8.0, 7.0]), "b": torch.tensor([3.0, 4.0, 6.0, 5.0])}
    record = agreement(components, ours, theirs)
    expected = spearmanr([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 8, 7, 3, 4, 6, 5]).statistic
    assert record["spearman"] == float(expected)
    # at 25 % both prune 2 of 8: ours {a0, a1}, theirs {a1, a0}; at 50 %: ours {a0..a3}, theirs {a0, a1, b0, b1}
    assert record["overlap_25"] == 1.0 and record["overlap_50"] == 0.5
    # under a cap of 50 % per layer the rankings become ours a0 a1 b0 b1, theirs a1 a0 b0 b1: the same sets
    assert agreement(components, ours, theirs, max_layer_rate=0.5)["overlap_50"] == 1.0
    constant = {"a": torch.ones(4), "b": torch.ones(4)}
    assert agreement(components, constant, theirs)["spearman"] is None


def test_ablation_agrees_with_itself_and_its_scores_are_cached_per_setting(tmp_path):
    cache = tmp_path / "cache"
    own = run_benchmark(Benchmark(**QUICK, method="ablation", ablation_cache=cache))
    assert own.agreement["reference"] == "ablation"
    assert own.agreement["spearman"] > 0.999 and own.agreement["overlap_25"] == own.agreement["overlap_50"] == 1.0
    (cached,) = cache.glob("*.safetensors")
    stamp = cached.stat().st_mtime_ns
    other = run_benchmark(Benchmark(**QUICK, method="magnitude", ablation_cache=cache))
    assert cached.stat().st_mtime_ns == stamp and len(list(cache.glob("*.safetensors"))) == 1  # read, not rescored
    assert -1.0 <= other.agreement["spearman"] < 0.999
    uncached = run_benchmark(Benchmark(**QUICK, method="magnitude"))
    assert uncached.agreement == other.agreement  # the cache holds exactly what scoring gives
    assert "agreement" in other.timings and "agreement" not in run_benchmark(
        Benchmark(**{**QUICK, "agreement": False}, method="magnitude")).timings
    # another seed draws other reference samples: another entry
    run_benchmark(Benchmark(**QUICK, method="magnitude", seed=1, ablation_cache=cache))
    assert len(list(cache.glob("*.safetensors"))) == 2


def test_run_agreement_on_the_command_line(tmp_path):
    done = CliRunner().invoke(app, ["run", "--method", "taylor", "--classes", "3", "--ref-per-class", "4",
                                    "--rates", "0,0.5", "--evaluate", "masked", "--latency-repeats", "0",
                                    "--agreement", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "agreement with ablation: Spearman rho" in done.output
    (written,) = tmp_path.glob("*.json")
    record = json.loads(written.read_text())
    assert set(record["agreement"]) == {"reference", "params", "spearman", "overlap_25", "overlap_50"}
    assert list((tmp_path / ABLATION_CACHE).glob("*.safetensors"))


def test_an_ablation_run_takes_the_scores_its_settings_agreement_cached_with_their_time(tmp_path):
    from safetensors import safe_open

    cache = tmp_path / "cache"
    run_benchmark(Benchmark(**QUICK, method="magnitude", ablation_cache=cache))  # the agreement fills the cache
    (cached,) = cache.glob("*.safetensors")
    with safe_open(str(cached), framework="pt") as handle:
        seconds = json.loads(handle.metadata()["seconds"])
    own = run_benchmark(Benchmark(**QUICK, method="ablation", ablation_cache=cache))
    assert own.timings["score"] == round(seconds, 4) > 0  # the time of the scoring that filled the cache
    assert own.timings["total"] >= own.timings["score"] + own.timings["evaluate"] - 1e-3
    fresh = run_benchmark(Benchmark(**QUICK, method="ablation"))
    assert [p["correct"] for p in own.curve] == [p["correct"] for p in fresh.curve]
    # other parameters are another entry, scored by the run itself
    run_benchmark(Benchmark(**QUICK, method="ablation", params={"quantity": "loss"}, ablation_cache=cache))
    assert len(list(cache.glob("*.safetensors"))) == 2

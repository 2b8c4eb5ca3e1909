"""Slimmed evaluation: physically smaller copies whose logits equal the masked model's, the same curve,
efficiency per rate, and a clean fall-back to masking where removal is impossible."""

from __future__ import annotations

import dataclasses
import time

import pytest
import timm
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

from helpers import QUICK_RATES, state_snapshot
from pxp_bench.benchmark import evaluate, prepare, run_benchmark, score
from pxp_bench.components import discover_components
from pxp_bench.errors import ConfigError
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.evaluate import prune_curve
from pxp_bench.metrics import curve_metrics, efficiency_metrics
from pxp_bench.masking import keep_masks, masked, pruned_count
from pxp_bench.models.zoo import build_zoo_model
from pxp_bench.plan import MIN_LATENCY_REPEATS, Benchmark
from pxp_bench.slim.curve import slim_curve
from pxp_bench.slim.efficiency import (MAX_PASSES, MIN_TIMED_MS, BatchTimes, batch1_latency,
                                      enough, evaluation_latency, parameter_count)
from pxp_bench.slim.surgery import Slimmer

RATES = (0.0, 0.2, 0.5, 0.8, 0.95)
TIMED_HERE = ("latency_ms_batch1", "latency_ms_batch1_iqr", "latency_ms_batch", "latency_ms_batch_iqr", "latency_batches")


def _vit_b_16() -> nn.Module:
    model = torchvision.models.vit_b_16(image_size=32, num_classes=5)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts the head at zero: all logits 0
    return model


def _zoo(name: str):
    return lambda: build_zoo_model(name).module


CASES = {  # model, input shape, kind, how many groups lose channels only together (residual streams)
    "digits-vgg-filters": (_zoo("digits-vgg"), (1, 32, 32), "filters", 0),
    "digits-vgg-neurons": (_zoo("digits-vgg"), (1, 32, 32), "neurons", 0),
    "digits-resnet-filters": (_zoo("digits-resnet"), (1, 32, 32), "filters", 6),
    "digits-vit-neurons": (_zoo("digits-vit"), (1, 32, 32), "neurons", 0),
    "resnet18-filters": (lambda: torchvision.models.resnet18(num_classes=5), (3, 64, 64), "filters", 12),
    "vgg11_bn-filters": (lambda: torchvision.models.vgg11_bn(num_classes=5), (3, 32, 32), "filters", 0),
    "vgg11_bn-neurons": (lambda: torchvision.models.vgg11_bn(num_classes=5), (3, 32, 32), "neurons", 0),
    "vit_b_16-neurons": (_vit_b_16, (3, 32, 32), "neurons", 0),
    "digits-vit-heads": (_zoo("digits-vit"), (1, 32, 32), "heads", 0),
    "vit_b_16-heads": (_vit_b_16, (3, 32, 32), "heads", 0),
    "timm-vit-heads": (lambda: timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5), (3, 32, 32),
                       "heads", 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_slimmed_logits_equal_the_masked_models_and_the_original_is_untouched(case):
    make, shape, kind, coupled = CASES[case]
    torch.manual_seed(0)
    model = make().eval()
    inputs = torch.randn(4, *shape)
    components = discover_components(model, kind, inputs[:1])
    before = state_snapshot(model)
    slimmer = Slimmer(model, components, inputs[:1])
    assert len(slimmer.coupled) == coupled and slimmer.whole == []
    order = torch.randperm(components.total, generator=torch.Generator().manual_seed(1))
    sizes = []
    for rate in RATES:
        keep = keep_masks(components, order, pruned_count(rate, components.total))
        with torch.no_grad(), masked(model, components, keep):
            expected = model(inputs)
        remaining = slimmer.advance(keep)
        with torch.no_grad(), masked(slimmer.model, components, remaining):
            got = slimmer.model(inputs)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))
        sizes.append(parameter_count(slimmer.model))
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    if coupled:  # at 95 % some channel is pruned in every layer of a residual stream: it left them all
        size = {group.name: group.size for group in components.groups}
        assert any(len(slimmer.present[name]) < size[name] for name in slimmer.coupled)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)


@pytest.mark.parametrize("model, kind", [("digits-vgg", "filters"), ("digits-resnet", "filters"),
                                         ("digits-vit", "neurons"), ("digits-vit", "heads")])
def test_slim_and_masked_evaluation_give_identical_curves(plugins, model, kind):
    bench = Benchmark(model=model, components=kind, method="taylor", n_classes=3, rates=(0.0, 0.25, 0.5, 0.75))
    slim = run_benchmark(bench, plugins=plugins)
    masked_run = run_benchmark(dataclasses.replace(bench, evaluate="masked"), plugins=plugins)
    assert [p["correct"] for p in slim.curve] == [p["correct"] for p in masked_run.curve]
    assert (slim.evaluate, masked_run.evaluate) == ("slim", "masked")
    assert "parameters" not in masked_run.curve[0] and masked_run.metrics.get("params_at_top_pr") is None
    flops = [p["flops"] for p in slim.curve]
    assert flops == sorted(flops, reverse=True) and flops[-1] < flops[0]
    evaluation_batch = min(128, slim.samples["evaluation"])  # one batch: the warm-up, then extra passes
    # latencies are timed where the speedup is read, at rate 0 and Top-PR, and nowhere else
    top_pr = slim.metrics["top_pr"]
    timed = [p for p in slim.curve if p["rate"] in (0.0, top_pr)]
    assert [p["rate"] for p in slim.curve if "latency_ms_batch1" in p] == [p["rate"] for p in timed]
    assert all("latency_ms_batch" not in p for p in slim.curve if p not in timed)
    assert all(p["latency_ms_batch1"] > 0 and p["latency_batch1_passes"] >= 5 for p in timed)
    assert all(p["latency_ms_batch"] > 0 and p["latency_batch_size"] == evaluation_batch for p in timed)
    assert all(p["latency_batches"] >= 5 and p["latency_ms_batch_iqr"] >= 0 for p in timed)
    assert all(p["latency_ms_batch1_iqr"] >= 0 for p in timed)
    dense, at_top = slim.curve[0], next(p for p in slim.curve if p["rate"] == slim.metrics["top_pr"])
    assert slim.metrics["params_at_top_pr"] == round(at_top["parameters"] / dense["parameters"], 6)
    relative = [point["latency_ms_batch_iqr"] / point["latency_ms_batch"] for point in (dense, at_top)]
    assert slim.metrics["speedup_at_top_pr_spread"] == round(sum(relative), 4)


def test_a_pruned_set_evaluated_before_keeps_its_latencies(plugins):
    prepared = prepare(Benchmark(method="magnitude", n_classes=3), plugins=plugins)
    scores = score(prepared).scores
    first = evaluate(prepared, scores)
    again = evaluate(prepared, {name: -values for name, values in scores.items()})  # rate 0: the same set
    assert prepared.memos["eval"].hits >= 1
    assert {key: again[0].efficiency[key] for key in TIMED_HERE} == {key: first[0].efficiency[key] for key in TIMED_HERE}
    top_pr = curve_metrics([p.rate for p in again], [p.correct for p in again], again[0].total)["top_pr"]
    assert all((point.rate in (0.0, top_pr)) == ("latency_ms_batch" in point.efficiency) for point in again)


def test_top_pr_is_timed_on_its_own_slimmed_copy_after_later_rates_slimmed_further():
    """Top-PR is known only after the next rate is evaluated; the copy timed then must be Top-PR's, not the
    later rate's (the slimmer removes components in place)."""
    torch.manual_seed(0)
    model = build_zoo_model("digits-vgg").module.eval()
    images = torch.randn(12, 1, 32, 32)
    labels = model(images).argmax(1).tolist()  # the unpruned model is right on every sample
    loader = DataLoader(LabelledTensors(images, labels), batch_size=4)
    components = discover_components(model, "filters", images[:1])
    order = torch.randperm(components.total, generator=torch.Generator().manual_seed(0))
    slim = slim_curve(model, components, images[:1], latency_repeats=MIN_LATENCY_REPEATS)
    timed_models = []  # the parameter count of each model timed, recorded on the way to the real timing
    time_it = slim.latency

    def recorded(model, masks, fills, batch_times):
        timed_models.append(parameter_count(model))
        return time_it(model, masks, fills, batch_times)

    slim.latency = recorded
    points = prune_curve(model, components, order, (0.0, 0.01, 0.9), loader, list(range(10)), torch.device("cpu"),
                         slim=slim)
    top_pr = curve_metrics([p.rate for p in points], [p.correct for p in points], points[0].total)["top_pr"]
    assert top_pr == 0.01  # 1 % keeps every prediction here, 90 % does not
    assert timed_models == [points[0].efficiency["parameters"], points[1].efficiency["parameters"]]
    assert points[1].efficiency["parameters"] > points[2].efficiency["parameters"]
    assert "latency_ms_batch1" in points[1].efficiency and "latency_ms_batch1" not in points[2].efficiency


def _batch_times(*passes: tuple[int, float]) -> BatchTimes:
    times = BatchTimes()
    for size, ms in passes:
        times.add(torch.zeros(size, 2), ms)
    return times


def test_the_evaluation_batch_latency_is_its_full_batches_after_the_first_topped_up_to_5_passes():
    def never(inputs):
        raise AssertionError("enough passes were timed")

    own = _batch_times((4, 99.0), *[(4, float(ms)) for ms in (20, 10, 30, 40, 50)], (1, 0.5))
    assert evaluation_latency(own, 5, never) == {  # numpy's percentiles of 10..50: q25 20, q75 40
        "latency_ms_batch": 30.0, "latency_ms_batch_iqr": 20.0, "latency_batch_size": 4, "latency_batches": 5}
    seen = []
    short = _batch_times((3, 5.0), (3, 60.0), (1, 1.0))
    record = evaluation_latency(short, 5, seen.append)
    assert record["latency_batches"] == 5 and len(seen) == 4 and all(inputs is short.first for inputs in seen)
    assert record["latency_batch_size"] == 3 and record["latency_ms_batch"] < 60.0


class _Sleeps(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.004)
        return x


def test_batch1_latency_times_fast_passes_until_they_add_up_to_50_ms():
    record = batch1_latency(_Sleeps(), torch.zeros(1, 2), 5)
    assert 5 < record["latency_batch1_passes"] <= 13 and record["latency_ms_batch1"] >= 4  # 4 ms each
    assert record["latency_ms_batch1_iqr"] >= 0
    assert not enough([10.0] * 4, 5) and not enough([1.0] * 5, 5) and enough([10.0] * 5, 5)
    assert enough([MIN_TIMED_MS / 2] * 6, 6) and not enough([MIN_TIMED_MS / 2] * 5, 6)
    assert enough([0.001] * MAX_PASSES, 5) and not enough([0.001] * (MAX_PASSES - 1), 5)


def test_efficiency_metrics_always_carry_the_speedups_spread():
    dense = {"parameters": 100, "flops": 1000, "latency_ms_batch": 10.0, "latency_ms_batch_iqr": 1.0}
    pruned = {"parameters": 50, "flops": 400, "latency_ms_batch": 4.0, "latency_ms_batch_iqr": 0.2}
    metrics = efficiency_metrics([0.0, 0.5], [dense, pruned], 0.5)
    assert metrics["speedup_at_top_pr"] == 2.5 and metrics["speedup_at_top_pr_spread"] == 0.15  # 0.1 + 0.05
    untimed = [{"parameters": 100, "flops": 1000}, {"parameters": 50, "flops": 400}]
    assert efficiency_metrics([0.0, 0.5], untimed, 0.5)["speedup_at_top_pr_spread"] is None
    masked_run = efficiency_metrics([0.0, 0.5], [None, None], 0.5)
    assert set(masked_run) == set(metrics) and all(value is None for value in masked_run.values())


def test_latency_repeats_0_skips_timing(plugins):
    result = run_benchmark(Benchmark(method="magnitude", n_classes=3, rates=QUICK_RATES, latency_repeats=0),
                           plugins=plugins)
    assert result.evaluate == "slim" and all("flops" in point for point in result.curve)
    assert not any(key.startswith("latency") for point in result.curve for key in point)
    assert result.metrics["speedup_at_top_pr"] is None and result.metrics["speedup_at_top_pr_spread"] is None


class _RawSum(nn.Module):
    """A residual stream that also receives a conv's raw output, while a BatchNorm (the conv's site)
    reads it too: a channel masked after that BatchNorm is still alive in the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stream = self.stem_bn(self.stem(x))
        raw = self.conv(stream)
        return self.head((stream + raw + self.bn(raw)).mean(dim=(2, 3)))


def test_a_stream_fed_past_a_site_stays_whole_and_masked():
    torch.manual_seed(0)
    model, inputs = _RawSum().eval(), torch.randn(2, 3, 8, 8)
    components = discover_components(model, "filters", inputs[:1])
    slimmer = Slimmer(model, components, inputs[:1])
    assert slimmer.coupled == [] and slimmer.whole == ["stem", "conv"]
    keep = keep_masks(components, torch.tensor([0, 4, 1, 5, 2, 3, 6, 7]), 4)  # channels 0 and 1 of both layers
    with torch.no_grad(), masked(model, components, keep):
        expected = model(inputs)
    with torch.no_grad(), masked(slimmer.model, components, slimmer.advance(keep)):
        torch.testing.assert_close(slimmer.model(inputs), expected)


class _SwappedHalves(nn.Module):
    """A residual sum whose second addend is a conv's output with its halves swapped (split, concatenated
    the other way round): that conv's channel i meets the stem's channel i + 2, not channel i."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.split(self.bn(self.conv(x)), 2, dim=1)
        return self.head((self.stem_bn(self.stem(x)) + torch.cat([second, first], dim=1)).mean(dim=(2, 3)))


def test_producers_tied_with_misaligned_channels_stay_whole_and_masked():
    # without the alignment guard Torch-Pruning cuts channels the other layer still uses: the copy breaks
    torch.manual_seed(0)
    model, inputs = _SwappedHalves().eval(), torch.randn(2, 3, 8, 8)
    components = discover_components(model, "filters", inputs[:1])
    slimmer = Slimmer(model, components, inputs[:1])
    assert slimmer.coupled == [] and sorted(slimmer.whole) == ["conv", "stem"]
    keep = keep_masks(components, torch.tensor([0, 4, 1, 5, 2, 3, 6, 7]), 4)  # channels 0 and 1 of both layers
    with torch.no_grad(), masked(model, components, keep):
        expected = model(inputs)
    with torch.no_grad(), masked(slimmer.model, components, slimmer.advance(keep)):
        torch.testing.assert_close(slimmer.model(inputs), expected)


class _NormedAttention(nn.Module):
    """A tiny transformer whose attention normalises the concatenated heads (timm's ``scale_norm``): a
    head's channels cannot leave that LayerNorm, so its heads stay whole."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attention = timm.layers.Attention(16, num_heads=4, scale_norm=True, norm_layer=nn.LayerNorm)
        self.classify = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.attention(self.embed(x)).mean(dim=1))


def test_heads_that_cannot_leave_stay_whole_and_the_curve_is_evaluated_masked():
    model = _NormedAttention().eval()
    example = torch.randn(1, 5, 8)
    components = discover_components(model, "heads", example)
    assert Slimmer(model, components, example).whole == ["attention"]
    with pytest.warns(UserWarning, match="no attention module of this model can lose heads physically"):
        assert slim_curve(model, components, example, latency_repeats=0) is None


def test_the_slim_curve_falls_back_to_masking_if_logits_ever_differ(plugins):
    prepared = prepare(Benchmark(method="magnitude", n_classes=3), plugins=plugins)
    example = prepared.splits.train[prepared.sets.reference[0]][0].unsqueeze(0)
    slim = slim_curve(prepared.model, prepared.components, example, latency_repeats=0)
    keep = keep_masks(prepared.components, torch.arange(prepared.components.total), 10)
    model, _, _, record = slim.at(keep)
    assert model is not prepared.model and record["parameters"] < parameter_count(prepared.model)
    with torch.no_grad():  # spoil the copy: the next rate must notice and go back to the original, masked
        list(slim.slimmer.model.parameters())[-1].add_(1.0)  # the classifier's bias
    with pytest.warns(UserWarning, match="differ from the masked model's"):
        model, masks, _, record = slim.at(keep_masks(prepared.components, torch.arange(prepared.components.total), 20))
    assert model is prepared.model and record is None and slim.mode == "masked"


@pytest.mark.parametrize("overrides, message", [
    ({"evaluate": "fast"}, "--evaluate must be slim or masked"),
    ({"latency_repeats": -1}, "--latency-repeats must be at least 5"),
    ({"latency_repeats": 3}, "an interquartile range.* or 0 to skip timing, got 3"),
])
def test_bad_evaluation_options_are_one_clear_error(plugins, overrides, message):
    with pytest.raises(ConfigError, match=message):
        run_benchmark(dataclasses.replace(Benchmark(method="magnitude"), **overrides), plugins=plugins)


def test_tuning_curves_stay_masked(plugins):
    """Optimisation evaluates thousands of tuning curves: no slimmed copy per trial (the same counts)."""
    from pxp_bench.benchmark import evaluate

    prepared = prepare(Benchmark(method="magnitude", n_classes=3, tune_per_class=5, rates=QUICK_RATES), plugins=plugins)
    scores = score(prepared).scores
    assert all(p.efficiency is None for p in evaluate(prepared, scores, "tune"))
    assert all(p.efficiency is not None for p in evaluate(prepared, scores, "eval"))

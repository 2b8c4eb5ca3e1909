"""The 20-rate curve slimmed vs masked (PROTOCOL section 8; figures in the README).

torchvision vgg16_bn and resnet18 with random weights at 224 px, 150 evaluation images (3 classes of
random tensors; ``PXP_BENCH_SLIM_IMAGES`` sets another number), ranked by LRP-epsilon scores on 6
reference images; both curves in one process, at the batch and in the layout a run evaluates in, the
same counts asserted. ``extra_info`` holds both
times, their ratio and the mean FLOPs fraction over the grid. Heavy on a CPU (vgg16_bn: about half an
hour on 2 cores): ``make bench`` only.
"""

from __future__ import annotations

import os
import time

import pytest
import torch
from torch.utils.data import DataLoader

from pxp_bench.api import LabelledTensors, ReferenceSet, RunContext, discover_components
from pxp_bench.batch_size import batch_size_for
from pxp_bench.device import channels_last_suits
from pxp_bench.attribution.lrp import lrp_scores
from pxp_bench.evaluate import prune_curve
from pxp_bench.masking import rank_components
from pxp_bench.models.pretrained import build_torchvision
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.slim.curve import slim_curve

CPU = torch.device("cpu")
CLASSES = [0, 1, 2]
IMAGES = int(os.environ.get("PXP_BENCH_SLIM_IMAGES", "150"))


@pytest.mark.parametrize("name", ["vgg16_bn", "resnet18"])
def test_slimmed_against_masked_curve(benchmark, name):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    torch.manual_seed(0)
    model = build_torchvision(name, weights="none", num_classes=1000).module.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(IMAGES, 3, 224, 224, generator=generator)
    batch = batch_size_for(model, inputs[:1], 128)  # as a run evaluates: vgg16_bn 2, resnet18 10 on a CPU
    loader = DataLoader(LabelledTensors(inputs, [i % 3 for i in range(IMAGES)]), batch_size=batch)
    components = discover_components(model, "filters", inputs[:1])
    reference = ReferenceSet(LabelledTensors(inputs[:6], [i % 3 for i in range(6)]), CLASSES, 6, CPU)
    order = rank_components(components, lrp_scores(model, components, reference, RunContext.seeded(0)))

    layout = channels_last_suits(model, inputs[:1])  # as a run evaluates
    started = time.perf_counter()
    masked_points = prune_curve(model, components, order, DEFAULT_RATES, loader, CLASSES, CPU, channels_last=layout)
    masked_s = time.perf_counter() - started

    def slimmed():
        slim = slim_curve(model, components, inputs[:1], latency_repeats=0, channels_last=layout)
        return prune_curve(model, components, order, DEFAULT_RATES, loader, CLASSES, CPU, slim=slim,
                           channels_last=layout)

    points = benchmark.pedantic(slimmed, rounds=1, iterations=1)
    assert [p.correct for p in points] == [p.correct for p in masked_points]
    flops = [p.efficiency["flops"] / points[0].efficiency["flops"] for p in points]
    benchmark.extra_info.update({
        "masked_s": round(masked_s, 2), "slim_s": round(benchmark.stats.stats.median, 2),
        "speedup": round(masked_s / benchmark.stats.stats.median, 2),
        "mean_flops_fraction": round(sum(flops) / len(flops), 3), "images": IMAGES, "batch": batch,
    })

"""Evaluation throughput with masks applied vs a plain ``torch.no_grad()`` loop (target <= 1.1x).

resnet18 at 224 px (random weights) over the same in-memory loader. Heavy on a CPU: runs under
``make bench`` only; ``extra_info["ratio"]`` is the figure the README reports.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from torch.utils.data import DataLoader

from pxp_bench.components import discover_components
from pxp_bench.device import in_layout
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.evaluate import correct_predictions
from pxp_bench.masking import keep_masks, masked, rank_components
from pxp_bench.models.pretrained import build_torchvision

CPU = torch.device("cpu")


def test_masked_evaluation_vs_plain_loop(benchmark):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    model = build_torchvision("resnet18", weights="none", num_classes=1000).module
    generator = torch.Generator().manual_seed(0)
    data = LabelledTensors(torch.rand(32, 3, 224, 224, generator=generator), list(range(32)))
    loader = DataLoader(data, batch_size=16)
    components = discover_components(model, "filters", data.inputs[:1])
    order = rank_components(components, {g.name: torch.rand(g.size, generator=generator) for g in components.groups})
    masks = keep_masks(components, order, components.total // 2)

    def plain() -> None:
        with torch.no_grad():
            for inputs, _ in loader:
                model(in_layout(inputs, True))  # the evaluation's input layout: only the masks differ

    plain()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        plain()
        times.append(time.perf_counter() - start)

    def with_masks() -> float:
        with masked(model, components, masks):
            return correct_predictions(model, loader, list(range(1000)), CPU, channels_last=True)

    benchmark.pedantic(with_masks, rounds=3, iterations=1)
    benchmark.extra_info["plain_s"] = round(statistics.median(times), 4)
    benchmark.extra_info["ratio"] = round(benchmark.stats.stats.median / statistics.median(times), 3)

"""LRP scoring as a ratio to a plain forward + backward of the same batch (target <= 3x).

zennit on CNNs (digits-vgg, vgg16_bn) and AttnLRP through lxt on ViTs (digits-vit, vit_b_16).
``extra_info["ratio"]`` holds the ratio; the README reports it. The 224 px cases are heavy on a CPU,
so they run only when benchmarks are enabled (``make bench``), not as smoke tests in ``make test``.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from pxp_bench.attribution.lrp import lrp_scores
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import discover_components
from pxp_bench.data.digits import load_digits_splits
from pxp_bench.data.protocol import draw_sets
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.models.zoo import build_zoo_model

CPU = torch.device("cpu")


def _forward_backward_seconds(model, inputs, targets, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        leaf = inputs.detach().requires_grad_(True)
        logits = model(leaf)
        torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), leaf)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(benchmark, model, inputs, targets, rounds: int, kind: str = "filters") -> None:
    components = discover_components(model, kind, inputs[:1])
    reference = ReferenceSet(LabelledTensors(inputs, targets.tolist()), sorted(set(targets.tolist())),
                             len(inputs), CPU)
    baseline = _forward_backward_seconds(model, inputs, targets)
    benchmark.pedantic(lambda: lrp_scores(model, components, reference, RunContext.seeded(0)), rounds=rounds, iterations=1)
    if not benchmark.disabled:
        benchmark.extra_info["forward_backward_s"] = round(baseline, 4)
        benchmark.extra_info["ratio"] = round(benchmark.stats.stats.median / baseline, 2)


def _digits_reference() -> tuple[torch.Tensor, torch.Tensor]:
    splits = load_digits_splits()
    sets = draw_sets(splits, n_classes=None, ref_per_class=10, tune_per_class=0, seed=0)
    return splits.train.inputs[sets.reference], torch.tensor([splits.train.targets[i] for i in sets.reference])


def test_lrp_digits_vgg_reference_batch(benchmark):
    _measure(benchmark, build_zoo_model("digits-vgg").module, *_digits_reference(), rounds=5)


def test_attnlrp_digits_vit_reference_batch(benchmark):
    _measure(benchmark, build_zoo_model("digits-vit").module, *_digits_reference(), rounds=5, kind="heads")


def test_lrp_vgg16_bn_224(benchmark):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    from torchvision.models import vgg16_bn

    torch.manual_seed(0)
    model = vgg16_bn(weights=None).eval()
    inputs = torch.rand(8, 3, 224, 224)
    targets = torch.randint(0, 1000, (8,))
    _measure(benchmark, model, inputs, targets, rounds=2)


def test_attnlrp_vit_b_16_224(benchmark):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    from pxp_bench.models.pretrained import build_torchvision

    model = build_torchvision("vit_b_16", weights="none").module
    inputs = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    _measure(benchmark, model, inputs, torch.randint(0, 1000, (8,)), rounds=2, kind="heads")

"""The batch rule (scoring and evaluation): on a CPU, batches hold at most CPU_BATCH_BYTES of the largest activation."""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.batch_size import CPU_BATCH_BYTES, batch_size_for, largest_activation_bytes
from pxp_bench.benchmark import prepare, run_prepared
from pxp_bench.plan import Benchmark


def test_a_model_with_large_activations_runs_in_small_batches_on_a_cpu(zoo_model):
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 3)).eval()
    example = torch.rand(1, 3, 224, 224)
    assert largest_activation_bytes(wide, example) == 64 * 224 * 224 * 4  # the conv's (and ReLU's) output
    assert batch_size_for(wide, example, 128) == CPU_BATCH_BYTES // (64 * 224 * 224 * 4) == 2
    assert batch_size_for(zoo_model("digits-vgg"), torch.rand(1, 1, 32, 32), 128) == 128
    assert batch_size_for(zoo_model("digits-vgg"), torch.rand(1, 1, 32, 32), 7) == 7  # never above the request
    assert not any(m._forward_hooks for m in wide.modules())


def test_a_cpu_run_scores_and_evaluates_in_batches_its_activations_fit(imagenet_like, plugins):
    # resnet18 at 448 px: its stem outputs 64 x 224 x 224 floats (12.8 MB) per image, so 2 images a batch
    bench = Benchmark(model="resnet18", weights="none", dataset="imagefolder", data_root=str(imagenet_like),
                      image_size=448, rates=(0.0, 0.5), method="taylor", ref_per_class=2, device="cpu")
    prepared = prepare(bench, plugins=plugins)
    assert prepared.batch_size == 2 < bench.batch_size
    result = run_prepared(prepared)
    assert [point["latency_batch_size"] for point in result.curve] == [2, 2]
    assert all(point["latency_batches"] >= max(5, len(prepared.sets.evaluation) // 2 - 1) for point in result.curve)

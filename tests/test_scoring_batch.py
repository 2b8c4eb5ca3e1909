"""The scoring batch rule: on a CPU, batches hold at most CPU_BATCH_BYTES of the largest activation."""

from __future__ import annotations

import torch
from torch import nn

from pxp_bench.scoring_batch import CPU_BATCH_BYTES, largest_activation_bytes, scoring_batch_size


def test_a_model_with_large_activations_scores_in_small_batches(zoo_model):
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, 3)).eval()
    example = torch.rand(1, 3, 224, 224)
    assert largest_activation_bytes(wide, example) == 64 * 224 * 224 * 4  # the conv's (and ReLU's) output
    assert scoring_batch_size(wide, example, 128) == CPU_BATCH_BYTES // (64 * 224 * 224 * 4) == 2
    assert scoring_batch_size(zoo_model("digits-vgg"), torch.rand(1, 1, 32, 32), 128) == 128
    assert scoring_batch_size(zoo_model("digits-vgg"), torch.rand(1, 1, 32, 32), 7) == 7  # never above the request
    assert not any(m._forward_hooks for m in wide.modules())

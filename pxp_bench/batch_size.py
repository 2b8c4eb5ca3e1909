"""How many samples a forward (and backward) pass takes at once: the batch of scoring and evaluation.

Measured on 2 CPU cores (AMD EPYC, 1 MB L2 per core, 32 MB L3), LRP over 8 images at 224 px, batch
1 / 3 / 8: resnet18 2.65 / 2.14 / 1.60 s, vit_b_16 heads 20.7 / 15.2 / 15.6 s, but vgg16_bn 10.7 /
10.7 (batch 4) / 11.8 s: its first layers produce 12.8 MB per image, and batches of them fall out of
the CPU's caches (at batch 30 scoring took 1.5x as long as at batch 1). Evaluation, forward passes
only, shows the same: a whole resnet18 run (LRP, 20-rate slimmed curve of 150 images) took 90.0 s at
batch 128 and 76.1 s at batch 8 (wall), with the kernel's time (fresh pages for each batch's activations)
down from 34 s to 3 s. The rule: on a CPU, a batch holds at most `CPU_BATCH_BYTES` of the largest
activation a forward pass produces (vgg16_bn: 2 images, resnet18: 10, vit_b_16: 13, the digits zoo:
--batch-size); on a GPU, --batch-size (halved on out-of-memory).
"""

from __future__ import annotations

import torch
from torch import nn

CPU_BATCH_BYTES = 32 * 2**20


@torch.no_grad()
def largest_activation_bytes(model: nn.Module, example: torch.Tensor) -> int:
    """The largest tensor any module outputs for one sample, in bytes."""
    largest = 0

    def record(_module, _inputs, output) -> None:
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output.numel() * output.element_size())  # a batch of one sample

    handles = [module.register_forward_hook(record) for module in model.modules() if not list(module.children())]
    try:
        model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return largest


def batch_size_for(model: nn.Module, example: torch.Tensor, requested: int) -> int:
    """``requested`` (--batch-size) on a GPU; on a CPU, no more than fits `CPU_BATCH_BYTES`."""
    if example.device.type != "cpu":
        return requested
    return max(1, min(requested, CPU_BATCH_BYTES // max(1, largest_activation_bytes(model, example))))

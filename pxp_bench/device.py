"""Devices: ``--device`` text into a ``torch.device`` (refusing devices this machine lacks), the
autocast of ``--amp``, and the input layout each device runs fastest on."""

from __future__ import annotations

import re
import warnings
from typing import Callable, TypeVar

import torch

from pxp_bench.errors import ConfigError


def resolve_device(text: str = "auto") -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``."""
    text = text.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", text):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text}: CUDA is not available on this machine. Use --device cpu or auto.")
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0."
            )
        return device
    raise ConfigError(f"unknown device '{text}'; use auto, cpu, cuda or cuda:N.")


AMP_DTYPES = {None: torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``--amp``'s choices and the dtype each runs the forward passes in (None: full precision)."""


def autocast(device: torch.device, amp: str | None) -> torch.autocast:
    """The autocast context of ``--amp`` on ``device`` (disabled without ``amp``)."""
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp], enabled=amp is not None)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def channels_last_suits(model: torch.nn.Module, example: torch.Tensor) -> bool:
    """Whether to evaluate ``model`` on channels-last image batches.

    On a CPU oneDNN's convolutions then run 1.25x faster on resnet18 and vgg16_bn (224 px, batch 50 /
    16, 2 cores; vit_b_16 1.06x, the digits models unchanged). Only where the model accepts them (a
    ``.view`` of a conv's output does not) and computes the same logits from ``example`` up to float
    rounding; weights stay as they are, the model is not modified.
    """
    if example.device.type != "cpu" or example.dim() != 4:
        return False
    try:
        with torch.no_grad():
            got = model(example.contiguous(memory_format=torch.channels_last))
            expected = model(example)
    except RuntimeError:
        return False
    scale = max(1.0, float(expected.abs().max()))
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=0.0, atol=1e-4 * scale))


def in_layout(inputs: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``inputs`` channels-last when ``channels_last`` (see `channels_last_suits`), else as they are."""
    return inputs.contiguous(memory_format=torch.channels_last) if channels_last else inputs


T = TypeVar("T")


def with_oom_backoff(stage: str, batch_size: int, work: Callable[[int], T]) -> T:
    """Run ``work(batch_size)``; on CUDA out-of-memory halve the batch once (with a warning), then fail
    with a clear message."""
    try:
        return work(batch_size)
    except torch.cuda.OutOfMemoryError:
        pass  # retried outside the handler, whose traceback would keep the failed attempt's memory alive
    smaller = max(1, batch_size // 2)
    torch.cuda.empty_cache()
    warnings.warn(f"CUDA ran out of memory while {stage} at batch size {batch_size}; retrying at {smaller}.",
                  stacklevel=2)
    try:
        return work(smaller)
    except torch.cuda.OutOfMemoryError:
        pass
    torch.cuda.empty_cache()
    raise ConfigError(
        f"CUDA ran out of memory while {stage}, also at batch size {smaller}. Lower --batch-size, "
        "evaluate with --amp bf16, or choose a smaller --image-size."
    )

"""What a slimmed model costs: parameters, FLOPs and measured latency (PROTOCOL section 5b).

FLOPs come from ``torch.utils.flop_counter`` (matrix multiplications and convolutions, 2 per
multiply-add), counted on one input. Latency is measured on the run's device at batch 1 and at the
evaluation batch, each after an untimed warm-up: the median and interquartile range of at least
``minimum`` timed forward passes, timed on until they add up to `MIN_TIMED_MS` (at most `MAX_PASSES`).
At the evaluation batch the evaluation's own passes count, topped up with passes of its first batch.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

MIN_TIMED_MS = 50.0
"""Fast passes are timed until they add up to this many milliseconds, so sub-millisecond medians are stable."""
MAX_PASSES = 1000
"""The most timed passes at one batch size."""


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@torch.no_grad()
def counted_forward(model: nn.Module, inputs: torch.Tensor) -> tuple[Any, int]:
    """The model's output for ``inputs`` and the FLOPs that pass took per input: a pass made anyway
    (e.g. a check of the logits) counts the FLOPs too."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        output = model(inputs)
    return output, int(counter.get_total_flops()) // len(inputs)


def flop_count(model: nn.Module, example: torch.Tensor) -> int:
    return counted_forward(model, example[:1])[1]


class Stopwatch:
    """Wall time since creation, counted after the device's queued work (CUDA runs asynchronously)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._synchronize()
        self.started = time.perf_counter()

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def milliseconds(self) -> float:
        self._synchronize()
        return (time.perf_counter() - self.started) * 1000


class BatchTimes:
    """The evaluation's forward passes as it runs them: ``(size, milliseconds)`` per batch, and the
    first batch's inputs (on the device, in the evaluation's layout) for `evaluation_latency`."""

    def __init__(self) -> None:
        self.times: list[tuple[int, float]] = []
        self.first: torch.Tensor | None = None

    def add(self, inputs: torch.Tensor, milliseconds: float) -> None:
        if self.first is None:
            self.first = inputs
        self.times.append((len(inputs), milliseconds))

    def __len__(self) -> int:
        return len(self.times)


def enough(times: Sequence[float], minimum: int) -> bool:
    """Whether ``times`` make a latency: ``minimum`` passes or more adding up to `MIN_TIMED_MS`, or
    `MAX_PASSES` of them."""
    return len(times) >= MAX_PASSES or (len(times) >= minimum and sum(times) >= MIN_TIMED_MS)


def timed_passes(forward: Callable[[], Any], device: torch.device, times: list[float], minimum: int) -> list[float]:
    """``times`` with timed calls of ``forward`` appended until they are `enough`."""
    while not enough(times, minimum):
        clock = Stopwatch(device)
        forward()
        times.append(clock.milliseconds())
    return times


def median_and_iqr(times: Sequence[float]) -> tuple[float, float]:
    """The median of ``times`` and their interquartile range (q75 - q25, numpy's percentiles), rounded."""
    q25, median, q75 = np.percentile(times, [25, 50, 75])
    return round(float(median), 4), round(float(q75 - q25), 4)


@torch.no_grad()
def batch1_latency(model: nn.Module, inputs: torch.Tensor, minimum: int) -> dict[str, Any]:
    """The latency of ``inputs`` (a batch of one) after one untimed pass that warms caches and kernels up."""
    model(inputs)
    times = timed_passes(lambda: model(inputs), inputs.device, [], minimum)
    median, iqr = median_and_iqr(times)
    return {"latency_ms_batch1": median, "latency_ms_batch1_iqr": iqr, "latency_batch1_passes": len(times)}


def evaluation_latency(batch_times: BatchTimes, minimum: int, forward: Callable[[torch.Tensor], Any]) -> dict[str, Any]:
    """The evaluation batch's latency from the evaluation's own timed passes: its full-size batches, the
    first left out as warm-up, topped up with passes of ``forward`` on the first batch while they are
    not `enough` (``forward`` runs as the evaluation does: masks, layout, autocast).

    Timing the passes the curve makes anyway costs nothing; only a short evaluation (e.g. 150 images,
    a batch or two) needs extra passes.
    """
    size = max(batch for batch, _ in batch_times.times)
    times = [ms for batch, ms in batch_times.times if batch == size][1:]
    timed_passes(lambda: forward(batch_times.first), batch_times.first.device, times, minimum)
    median, iqr = median_and_iqr(times)
    return {"latency_ms_batch": median, "latency_ms_batch_iqr": iqr, "latency_batch_size": size,
            "latency_batches": len(times)}


def efficiency(model: nn.Module, flops: int) -> dict[str, Any]:
    """Parameters and ``flops`` per input (`counted_forward`); latencies are timed only where they are read
    (`pxp_bench.slim.curve.SlimCurve.latency`)."""
    return {"parameters": parameter_count(model), "flops": flops}

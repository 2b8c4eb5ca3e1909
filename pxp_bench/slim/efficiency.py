"""What a slimmed model costs: parameters, FLOPs and measured latency (PROTOCOL section 5b).

FLOPs come from ``torch.utils.flop_counter`` (matrix multiplications and convolutions, 2 per
multiply-add), counted on one input. Latency is the median of timed forward passes on the run's
device: at batch 1 extra passes after an untimed warm-up, at the evaluation batch the evaluation's own.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import torch
from torch import nn


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


@torch.no_grad()
def latency_ms(model: nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``repeats`` forward passes of ``inputs``, in milliseconds, after one untimed
    pass that warms caches and kernels up."""
    model(inputs)
    times = []
    for _ in range(repeats):
        clock = Stopwatch(inputs.device)
        model(inputs)
        times.append(clock.milliseconds())
    return statistics.median(times)


def evaluation_latency(batch_times: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """The evaluation batch's latency from the evaluation's own timed forward passes ``(size, ms)``:
    the median over its full-size batches, the first left out as warm-up when there are more.

    Timing the passes the curve makes anyway costs nothing; extra passes at the evaluation batch cost
    more than the evaluation itself whenever the evaluation set is a few batches (e.g. 150 images).
    """
    size = max(batch for batch, _ in batch_times)
    times = [ms for batch, ms in batch_times if batch == size]
    timed = times[1:] if len(times) > 1 else times
    return {"latency_ms_batch": round(statistics.median(timed), 4), "latency_batch_size": size,
            "latency_batches": len(timed)}


def efficiency(model: nn.Module, example: torch.Tensor, repeats: int, flops: int) -> dict[str, Any]:
    """Parameters, ``flops`` per input (`counted_forward`) and, with ``repeats`` > 0, the latency at
    batch 1 (the evaluation batch's comes from the evaluation itself: `evaluation_latency`)."""
    record: dict[str, Any] = {"parameters": parameter_count(model), "flops": flops}
    if repeats > 0:
        record["latency_ms_batch1"] = round(latency_ms(model, example[:1], repeats), 4)
    return record


def efficiency_metrics(rates: Sequence[float], records: Sequence[dict[str, Any] | None],
                       top_pr: float) -> dict[str, float | None]:
    """At Top-PR, the parameters and FLOPs remaining (fractions of rate 0's) and the speedup of the
    evaluation batch over rate 0; None where not measured."""
    by_rate = dict(zip(rates, records))
    dense, at = by_rate.get(0.0), by_rate.get(top_pr)
    if not dense or not at:
        return {"params_at_top_pr": None, "flops_at_top_pr": None, "speedup_at_top_pr": None}
    speedup = None
    if "latency_ms_batch" in dense and "latency_ms_batch" in at:
        speedup = round(dense["latency_ms_batch"] / at["latency_ms_batch"], 4)
    return {"params_at_top_pr": round(at["parameters"] / dense["parameters"], 6),
            "flops_at_top_pr": round(at["flops"] / max(1, dense["flops"]), 6),
            "speedup_at_top_pr": speedup}

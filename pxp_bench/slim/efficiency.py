"""What a slimmed model costs: parameters, FLOPs and measured latency (PROTOCOL section 5b).

FLOPs come from ``torch.utils.flop_counter`` (matrix multiplications and convolutions, 2 per
multiply-add), counted on one input. Latency is the median of timed forward passes after one untimed
warm-up, on the run's device.
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
def flop_count(model: nn.Module, example: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model(example[:1])
    return int(counter.get_total_flops())


@torch.no_grad()
def latency_ms(model: nn.Module, inputs: torch.Tensor, repeats: int) -> float:
    """Median wall time of ``repeats`` forward passes of ``inputs``, in milliseconds."""
    cuda = inputs.device.type == "cuda"
    times = []
    for index in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize(inputs.device)
        started = time.perf_counter()
        model(inputs)
        if cuda:
            torch.cuda.synchronize(inputs.device)
        if index:  # the first pass warms caches and kernels up
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def efficiency(model: nn.Module, example: torch.Tensor, batch_size: int, repeats: int) -> dict[str, Any]:
    """Parameters, FLOPs per input and, with ``repeats`` > 0, latency at batch 1 and at ``batch_size``."""
    record: dict[str, Any] = {"parameters": parameter_count(model), "flops": flop_count(model, example)}
    if repeats > 0:
        generator = torch.Generator().manual_seed(0)
        batch = torch.randn((batch_size, *example.shape[1:]), generator=generator).to(example.device, example.dtype)
        record["latency_ms_batch1"] = round(latency_ms(model, batch[:1], repeats), 4)
        record["latency_ms_batch"] = round(latency_ms(model, batch, repeats), 4)
        record["latency_batch_size"] = batch_size
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

"""Batches of a sample set, and sample sets decoded once into memory when they fit (PROTOCOL section 8).

A pruning curve reads its evaluation set at every rate (20 times) and a study reads its reference and
tuning sets at every trial. Decoding, resizing and normalising the same JPEGs each time is work the
model's passes wait for on a CPU (and most of a curve's time on a GPU), so a set whose decoded tensors
take at most 1/8 of the machine's memory is decoded once and kept; larger sets stream from disk. The
tensors are the ones a loader would have delivered, so every count is unchanged.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import PxpBenchError, unwrap_worker_error

MEMORY_SHARE = 8
"""A set is kept in memory when its decoded tensors take at most 1/MEMORY_SHARE of the machine's memory."""
FALLBACK_MEMORY = 16 * 2**30
"""The memory assumed where the system does not tell."""
DECODE_BATCH = 64


def held_in_memory(dataset: Dataset) -> bool:
    """Whether ``dataset`` (or the set a `Subset` draws from) is tensors in memory already."""
    return isinstance(getattr(dataset, "dataset", dataset), LabelledTensors)


def loader(dataset: Dataset, batch_size: int, device: torch.device) -> DataLoader:
    """Tensors in memory load fastest in the main process; decoded images use worker processes."""
    workers = 0 if held_in_memory(dataset) else min(4, os.cpu_count() or 1)
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda")


def memory_budget() -> int:
    """Bytes a decoded set may take: 1/MEMORY_SHARE of the physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every platform tells
        total = FALLBACK_MEMORY
    return total // MEMORY_SHARE


def decoded_once(dataset: Dataset, sample_shape: Sequence[int], *, budget: int | None = None) -> Dataset:
    """``dataset`` as tensors in memory when its float32 samples fit ``budget`` bytes (default:
    `memory_budget`); otherwise, or when it is in memory already, ``dataset`` itself."""
    size = len(dataset) * math.prod(sample_shape) * 4
    if held_in_memory(dataset) or len(dataset) == 0 or size > (memory_budget() if budget is None else budget):
        return dataset
    inputs, targets = [], []
    try:
        for batch_inputs, batch_targets in loader(dataset, DECODE_BATCH, torch.device("cpu")):
            inputs.append(batch_inputs)
            targets.extend(int(target) for target in batch_targets)
    except PxpBenchError as exc:  # e.g. an unreadable image, raised inside a loader worker
        raise unwrap_worker_error(exc) from None
    return LabelledTensors(torch.cat(inputs), targets)


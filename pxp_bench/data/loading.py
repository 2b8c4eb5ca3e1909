"""Batches of a sample set, and sample sets decoded once into memory when they fit (PROTOCOL section 4.3).

A pruning curve reads its evaluation set at every rate (20 times) and a study reads its reference and
tuning sets at every trial. Decoding, resizing and normalising the same JPEGs each time is work the
model's passes wait for on a CPU (and most of a curve's time on a GPU), so a run keeps its sets decoded
while together they take at most 1/16 of the memory this process may use (the machine's, or its
cgroup's limit when lower); larger sets stream from disk. The tensors are the ones a loader would have
delivered, so every count is unchanged.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import PxpBenchError, unwrap_worker_error

MEMORY_SHARE = 16
"""A run's decoded sets take at most 1/MEMORY_SHARE of the memory it may use (a study holds one run per seed)."""
FALLBACK_MEMORY = 16 * 2**30
"""The memory assumed where the system does not tell."""
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
DECODE_BATCH = 64


def held_in_memory(dataset: Dataset) -> bool:
    """Whether ``dataset`` (or the set a `Subset` draws from) is tensors in memory already."""
    return isinstance(getattr(dataset, "dataset", dataset), LabelledTensors)


def loader(dataset: Dataset, batch_size: int, device: torch.device) -> DataLoader:
    """Tensors in memory load fastest in the main process; decoded images use worker processes, forked on
    Linux. Named, since a suite's cell starts from a forkserver and multiprocessing then makes that its
    default: each loader's workers would import torch anew (seconds a loader, twice a run, on any set)."""
    workers = 0 if held_in_memory(dataset) else min(4, os.cpu_count() or 1)
    context = multiprocessing.get_context("fork") if workers and sys.platform.startswith("linux") else None
    return DataLoader(dataset, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      pin_memory=device.type == "cuda", multiprocessing_context=context)


def usable_memory() -> int:
    """Bytes this process may use: the physical memory, or its cgroup's limit when lower (containers)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every platform tells
        total = FALLBACK_MEMORY
    for path in CGROUP_LIMITS:
        try:
            limit = Path(path).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def memory_budget() -> int:
    """Bytes a run's decoded sets may take together: 1/MEMORY_SHARE of `usable_memory`."""
    return usable_memory() // MEMORY_SHARE


def decoded_size(dataset: Dataset) -> int:
    """Bytes ``dataset`` holds in memory: its tensors when decoded, else nothing."""
    return dataset.inputs.nbytes if isinstance(dataset, LabelledTensors) else 0


def decoded_once(dataset: Dataset, sample_shape: Sequence[int], *, budget: int) -> Dataset:
    """``dataset`` as tensors in memory when its float32 samples fit ``budget`` bytes; otherwise, or when
    it is in memory already, ``dataset`` itself. Filled batch by batch: the set is never held twice."""
    if held_in_memory(dataset) or len(dataset) == 0 or len(dataset) * math.prod(sample_shape) * 4 > budget:
        return dataset
    inputs: torch.Tensor | None = None
    targets: list[int] = []
    try:
        for batch_inputs, batch_targets in loader(dataset, DECODE_BATCH, torch.device("cpu")):
            if inputs is None:
                inputs = torch.empty((len(dataset), *batch_inputs.shape[1:]), dtype=batch_inputs.dtype)
            inputs[len(targets):len(targets) + len(batch_targets)] = batch_inputs
            targets.extend(int(target) for target in batch_targets)
    except PxpBenchError as exc:  # e.g. an unreadable image, raised inside a loader worker
        raise unwrap_worker_error(exc) from None
    return LabelledTensors(inputs, targets)

"""pxp-bench: benchmark attribution methods for pruning neural networks by explaining them.

The public API is importable from here without loading torch; the run pipeline (`Benchmark`,
`run_benchmark`) is imported on first use. Plugin authors also use `pxp_bench.api` (what a method,
model or dataset needs; imports torch) and `pxp_bench.testing` (the conformance kit).
"""

from __future__ import annotations

from typing import Any

from pxp_bench.errors import (
    CheckpointError,
    ComponentError,
    ConfigError,
    DataError,
    PluginError,
    PxpBenchError,
    StorageError,
    UnknownNameError,
)
from pxp_bench.hookspecs import hookimpl
from pxp_bench.params import Categorical, FloatRange, IntRange
from pxp_bench.specs import (
    DatasetSpec,
    DatasetSplits,
    ExecutorSpec,
    LoadedModel,
    MethodSpec,
    ModelSpec,
    OptimizerSpec,
    TaskSpec,
)

__all__ = [
    "Benchmark",
    "Categorical",
    "CheckpointError",
    "ComponentError",
    "ConfigError",
    "DataError",
    "DatasetSpec",
    "DatasetSplits",
    "ExecutorSpec",
    "FloatRange",
    "IntRange",
    "LoadedModel",
    "MethodSpec",
    "ModelSpec",
    "OptimizerSpec",
    "TaskSpec",
    "PluginError",
    "PxpBenchError",
    "StorageError",
    "UnknownNameError",
    "discover_components",
    "hookimpl",
    "run_benchmark",
]

_LAZY = {
    "Benchmark": "pxp_bench.benchmark",
    "run_benchmark": "pxp_bench.benchmark",
    "discover_components": "pxp_bench.components",
}


def __getattr__(name: str) -> Any:
    """Import torch-dependent API on first use, keeping ``import pxp_bench`` light for plugins."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pxp_bench' has no attribute {name!r}")

"""The plugin contract: every hook receives a ``register`` callback (or the CLI app) bound to the plugin.

Plugins ``import pxp_bench`` and decorate their implementations with ``@pxp_bench.hookimpl``. The core
owns validation, duplicate detection and error messages, so a hook only calls ``register``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pluggy

if TYPE_CHECKING:
    import typer

    from pxp_bench.specs import DatasetSpec, ExecutorSpec, MethodSpec, ModelSpec, OptimizerSpec, TaskSpec

PROJECT = "pxp_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register attribution methods: call ``register(MethodSpec(...))`` once per method."""


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register architectures: call ``register(ModelSpec(...))`` once per model name."""


@hookspec
def register_datasets(register: Callable[[DatasetSpec], None]) -> None:
    """Register datasets: call ``register(DatasetSpec(...))`` once per dataset name."""


@hookspec
def register_optimizers(register: Callable[[OptimizerSpec], None]) -> None:
    """Register hyperparameter optimizers: call ``register(OptimizerSpec(...))`` once per optimizer."""


@hookspec
def register_executors(register: Callable[[ExecutorSpec], None]) -> None:
    """Register suite executors: call ``register(ExecutorSpec(...))`` once per executor."""


@hookspec
def register_tasks(register: Callable[[TaskSpec], None]) -> None:
    """Register task kinds (what evaluation means): call ``register(TaskSpec(...))`` once per task."""


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the ``pxp-bench`` Typer app (``@app.command()``)."""

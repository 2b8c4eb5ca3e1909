"""The exception types a user can cause; the CLI prints them without a traceback and exits 2."""

from __future__ import annotations


class PxpBenchError(Exception):
    """A problem the user can fix: the message says what was wrong and what to do."""


class UnknownNameError(PxpBenchError):
    """A model, method, dataset, optimizer or component name that is not registered."""


class PluginError(PxpBenchError):
    """A plugin failed to load, raised inside a hook, or registered a name twice."""


class ConfigError(PxpBenchError):
    """A bad option value: rates, params, classes, sample counts, device, output folder."""


class DataError(PxpBenchError):
    """A dataset that is missing, malformed, or does not fit the model."""


class CheckpointError(PxpBenchError):
    """A checkpoint that is missing, corrupt, unsafe, or does not match its manifest."""


class StorageError(PxpBenchError):
    """A result that could not be written where asked (the message says where it went instead)."""


class ComponentError(PxpBenchError):
    """A model that has no prunable components of the requested kind, or scores that do not fit."""


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``: a library's exception inside one line of ours."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def unwrap_worker_error(exc: PxpBenchError) -> PxpBenchError:
    """The one-line error a DataLoader worker raised, without torch's re-raise wrapping.

    torch re-raises a worker's exception as the same type with a multi-line message ("Caught X in
    DataLoader worker process 0. Original Traceback ..."), whose last line is the original message.
    """
    message = str(exc)
    if "Original Traceback" not in message:
        return exc
    last = message.rstrip().splitlines()[-1]
    _, _, original = last.partition(f"{type(exc).__name__}: ")
    return type(exc)(original or last)

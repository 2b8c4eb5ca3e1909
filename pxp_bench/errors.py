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


class ComponentError(PxpBenchError):
    """A model that has no prunable components of the requested kind, or scores that do not fit."""

"""What every check of the kit shares: the embedded models and grid it checks on, `ConformanceError`,
`fresh_plugins`, and how a check fails or finds and loads a spec."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from pxp_bench.errors import PxpBenchError
from pxp_bench.plugins import LOAD_ENV, Plugins, get_plugins


KIT_MODELS = {"cnn": "digits-vgg", "transformer": "digits-vit", "lm": "tiny-llama"}
"""The embedded models a method is checked on, per family it declares."""
KIT_RATES = (0.0, 0.5)
"""The kit scores, it does not evaluate: a grid any of the kit's models can prune (the standard grid would
prune none of tiny-llama's 8 heads at its lowest rates, and is refused there)."""
FAMILY_KINDS = {"cnn": ("filters", "neurons"), "transformer": ("heads", "neurons"), "lm": ("heads", "neurons")}
"""The component kinds a model of each family can have (a CNN without Conv2d, an MLP, has neurons only)."""


class ConformanceError(AssertionError):
    """A plugin breaks the contract; the message says which plugin and what."""


@contextmanager
def fresh_plugins(load: str | None = None) -> Iterator[Plugins]:
    """The process-wide plugins (what the commands and the kit's checks use), loaded afresh on entry and
    forgotten on exit, so that a test sees the plugins installed and selected now. ``load`` sets
    ``PXP_BENCH_LOAD_PLUGINS`` inside the block (comma list of distributions; ``""``: none), restored after."""
    before = os.environ.get(LOAD_ENV)
    if load is not None:
        os.environ[LOAD_ENV] = load
    get_plugins.cache_clear()
    try:
        yield get_plugins()
    finally:
        get_plugins.cache_clear()
        if load is not None:
            if before is None:
                os.environ.pop(LOAD_ENV, None)
            else:
                os.environ[LOAD_ENV] = before


def fail(owner: str, problem: str) -> None:
    raise ConformanceError(f"{owner}: {problem}")


def spec_from(registry, spec_or_name, kind: str):
    """The spec itself, or the one registered under a name; an unknown name fails the check."""
    if not isinstance(spec_or_name, str):
        return spec_or_name
    try:
        return registry.get(spec_or_name)
    except PxpBenchError as exc:
        fail(f"{kind} '{spec_or_name}'", str(exc))


def imported(owner: str, load):
    """``load()`` (a spec's ``load_*``: imports a ``"module:function"`` string); a failure fails the check."""
    try:
        return load()
    except PxpBenchError as exc:
        fail(owner, str(exc).removeprefix(f"{owner}: "))

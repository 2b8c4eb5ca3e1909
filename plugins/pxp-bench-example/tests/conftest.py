"""The example's tests load it the way users do: installed, through its entry point."""

from __future__ import annotations

import pytest

from pxp_bench.plugins import get_plugins


@pytest.fixture(autouse=True)
def example_selected(monkeypatch):
    """Load this plugin alone among the installed ones (pxp-bench's own test suite loads none)."""
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "pxp-bench-example")
    get_plugins.cache_clear()
    yield
    get_plugins.cache_clear()

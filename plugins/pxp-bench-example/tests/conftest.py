"""The example's tests load it the way users do: installed, through its entry point."""

from __future__ import annotations

import pytest

from pxp_bench.testing import fresh_plugins


@pytest.fixture(autouse=True)
def example_selected():
    """Load this plugin alone among the installed ones (pxp-bench's own test suite loads none), afresh for
    each test."""
    with fresh_plugins(load="pxp-bench-example"):
        yield

"""Benchmarks use the built-in plugins only, like the tests."""

from __future__ import annotations

import os

os.environ["PXP_BENCH_LOAD_PLUGINS"] = ""

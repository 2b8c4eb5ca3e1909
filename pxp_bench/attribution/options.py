"""Parameters shared by the methods that aggregate per-sample relevances (PROTOCOL section 3)."""

from __future__ import annotations

from pxp_bench.params import Categorical

AGGREGATION = Categorical(("abs", "signed"), "abs")
NORMALIZE = Categorical(("none", "layer"), "none")

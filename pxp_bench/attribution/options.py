"""Parameters shared by the methods that aggregate per-sample relevances (PROTOCOL section 3)."""

from __future__ import annotations

from pxp_bench.params import Categorical

AGGREGATION = Categorical(("abs", "signed"), "abs")
NORMALIZE = Categorical(("none", "layer"), "none", searched=False)
INIT = Categorical(("one", "logit"), "one", searched=False)
"""``one``: the target output carries relevance 1; ``logit``: it carries the logit's value."""

GRADIENT_OPTIONS = {"aggregation": AGGREGATION, "normalize": NORMALIZE, "init": INIT}

LRP_RULES = ("epsilon", "gamma", "zplus", "alpha2beta1")
LRP_GROUPS = ("low", "mid", "high", "fc")
"""Depth groups: the first / middle / last quarter of the convs in execution order, and Linear layers."""

ATTENTION_RULES = ("attnlrp", "cp")
"""Transformer LRP inside attention: AttnLRP's uniform rule, or CP-LRP (attention held constant)."""

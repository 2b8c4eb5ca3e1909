"""Parameters shared by the methods that aggregate per-sample relevances (PROTOCOL section 3)."""

from __future__ import annotations

from pxp_bench.params import Categorical

AGGREGATIONS = ("abs", "abs_per_position", "signed")
"""``abs``: |sum over positions|; ``abs_per_position``: sum over positions of |r| (the paper's code for
transformers); ``signed``: the signed sum. Each then averaged over the reference samples."""
AGGREGATION = Categorical(AGGREGATIONS, "abs")
TRANSFORMER_AGGREGATION = Categorical(AGGREGATIONS, "abs_per_position")
"""Transformer neurons and heads default to per-position absolute values, as the paper's code."""
NORMALIZE = Categorical(("none", "layer"), "none", searched=False)
INIT_CHOICES = ("one", "logit")
"""``one``: the target output carries relevance 1; ``logit``: it carries the logit's value."""
INIT_LOGIT = Categorical(INIT_CHOICES, "logit", searched=False)
"""taylor, ig, smoothgrad: their textbook formulas carry the logit (Molchanov: a * dy/da)."""
INIT_ONE = Categorical(INIT_CHOICES, "one", searched=False)
"""lrp: zennit's one-hot seed, the paper's."""

GRADIENT_OPTIONS = {"aggregation": AGGREGATION, "normalize": NORMALIZE, "init": INIT_LOGIT}
TRANSFORMER_OPTIONS = {"aggregation": TRANSFORMER_AGGREGATION}
"""Family parameters: what differs on transformers (`MethodSpec.family_params`)."""

LRP_RULES = ("epsilon", "gamma", "zplus", "alpha2beta1")
LRP_GROUPS = ("low", "mid", "high", "fc")
"""Depth groups: the first / middle / last quarter of the convs in execution order, and Linear layers."""

ATTENTION_RULES = ("attnlrp", "cp")
"""Transformer LRP inside attention: AttnLRP's uniform rule, or CP-LRP (attention held constant)."""

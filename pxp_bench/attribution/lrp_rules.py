"""The layer-group rule table both LRP rule sets share (PROTOCOL section 3): layers split into depth groups
``low`` / ``mid`` / ``high`` by execution order, and each group's rule name made into a zennit rule. The CNN
composites (`pxp_bench.attribution.lrp`) and the transformer ones (`pxp_bench.attribution.attnlrp`) import
it; it imports neither.

zennit is LGPL-3.0; pxp-bench imports it unmodified.
"""

from __future__ import annotations

import math

from pxp_bench.errors import ConfigError


def depth_groups(conv_names: list[str]) -> dict[str, list[str]]:
    """Split convs (in execution order) into low / mid / high: ceil(L/4) first, ceil(L/4) last."""
    if len(conv_names) < 2:  # a single conv is "low"; it cannot be first and last quarter at once
        return {"low": list(conv_names), "mid": [], "high": []}
    size = math.ceil(len(conv_names) / 4)
    return {"low": conv_names[:size], "mid": conv_names[size:-size], "high": conv_names[-size:]}


def rule_for(name: str, *, linear: bool, epsilon: float, gamma_conv: float, gamma_linear: float):
    """The zennit rule called ``name`` with its parameters; an unknown name is an error."""
    from zennit.rules import AlphaBeta, Epsilon, Gamma, ZPlus

    rules = {
        "epsilon": lambda: Epsilon(epsilon=epsilon),
        "gamma": lambda: Gamma(gamma=gamma_linear if linear else gamma_conv),
        "zplus": ZPlus,
        "alpha2beta1": lambda: AlphaBeta(alpha=2.0, beta=1.0),
    }
    if name not in rules:
        raise ConfigError(f"unknown LRP rule '{name}'; choose one of {', '.join(rules)}.")
    return rules[name]()

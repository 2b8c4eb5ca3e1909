"""Built-in method plugin: random, magnitude, taylor, ig, smoothgrad and lrp.

Score functions are named as ``"module:function"`` strings and imported on first use, so listing
methods never imports torch, zennit or captum.
"""

from __future__ import annotations

from pxp_bench.attribution.options import (
    AGGREGATION,
    ATTENTION_RULES,
    GRADIENT_OPTIONS,
    INIT_ONE,
    LRP_GROUPS,
    LRP_RULES,
    NORMALIZE,
    TRANSFORMER_OPTIONS,
)
from pxp_bench.hookspecs import hookimpl
from pxp_bench.params import Categorical, FloatRange, IntRange
from pxp_bench.specs import FAMILIES, MethodSpec

ALL_FAMILIES = frozenset(FAMILIES)
"""The built-in methods below know language models too (`pxp_bench.lm`)."""


def _lrp_params() -> dict:
    # default: LRP-epsilon everywhere, the paper's strongest non-optimised composite
    return {
        **{group: Categorical(LRP_RULES, "epsilon") for group in LRP_GROUPS},
        "epsilon": FloatRange(1e-12, 1.0, 1e-6, log=True, searched=False),
        "gamma_conv": FloatRange(0.0, 10.0, 0.25, searched=False),
        "gamma_linear": FloatRange(0.0, 10.0, 0.05, searched=False),
        "aggregation": AGGREGATION,
        "normalize": NORMALIZE,
        "init": INIT_ONE,
    }


@hookimpl
def register_methods(register) -> None:
    register(MethodSpec(
        name="random",
        score="pxp_bench.attribution.baselines:random_scores",
        summary="uniform random scores from the run's seed (the baseline every method must beat)",
        families=ALL_FAMILIES,
    ))
    register(MethodSpec(
        name="magnitude",
        score="pxp_bench.attribution.baselines:magnitude_scores",
        summary="mean |w| of the weights producing each component (data-free; ranks layers by fan-in, see lamp / l1)",
        params={"normalize": NORMALIZE},
        presets={"layer": {"normalize": "layer"}},
        families=ALL_FAMILIES,
    ))
    register(MethodSpec(
        name="taylor",
        score="pxp_bench.attribution.gradients:taylor_scores",
        summary="first-order Taylor: activation x gradient of the true-class logit (Molchanov et al.)",
        params=GRADIENT_OPTIONS,
        family_params={"transformer": TRANSFORMER_OPTIONS, "lm": TRANSFORMER_OPTIONS},
        families=ALL_FAMILIES,
    ))
    register(MethodSpec(
        name="ig",
        score="pxp_bench.attribution.gradients:ig_scores",
        summary="latent Integrated Gradients at each component, zero input baseline",
        params={"n_steps": IntRange(1, 1000, 20, searched=False), **GRADIENT_OPTIONS},
        family_params={"transformer": TRANSFORMER_OPTIONS, "lm": TRANSFORMER_OPTIONS},
        families=ALL_FAMILIES,
    ))
    register(MethodSpec(
        name="smoothgrad",
        score="pxp_bench.attribution.gradients:smoothgrad_scores",
        summary="SmoothGrad of activation x gradient: mean over Gaussian-noised inputs",
        params={"sigma": FloatRange(0.0, 1.0, 0.15, searched=False),
                "n_samples": IntRange(1, 1000, 20, searched=False), **GRADIENT_OPTIONS},
        family_params={"transformer": TRANSFORMER_OPTIONS, "lm": TRANSFORMER_OPTIONS},
        families=ALL_FAMILIES,
    ))
    register(MethodSpec(
        name="lrp",
        score="pxp_bench.attribution.lrp:lrp_scores",
        summary="LRP with one rule per depth group (zennit for CNNs, lxt AttnLRP for transformers)",
        params=_lrp_params(),
        family_params={family: {**TRANSFORMER_OPTIONS, "attention": Categorical(ATTENTION_RULES, "attnlrp")}
                       for family in ("transformer", "lm")},
        families=ALL_FAMILIES,
        presets={
            "epsilon": {group: "epsilon" for group in LRP_GROUPS},
            "yeom": {**{group: "zplus" for group in LRP_GROUPS}, "normalize": "layer"},
        },
    ))

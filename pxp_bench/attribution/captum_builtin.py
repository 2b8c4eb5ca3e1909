"""Built-in method plugin: captum's layer attributions and true ablation (`pxp_bench.attribution.captum_bridge`).

Score functions are named as ``"module:function"`` strings and imported on first use, so listing
methods never imports torch or captum.
"""

from __future__ import annotations

from pxp_bench.attribution.options import AGGREGATION, NORMALIZE, TRANSFORMER_OPTIONS
from pxp_bench.hookspecs import hookimpl
from pxp_bench.params import Categorical, FloatRange, IntRange
from pxp_bench.specs import FAMILIES, MethodSpec

BRIDGE = "pxp_bench.attribution.captum_bridge"
LAYER_OPTIONS = {"aggregation": AGGREGATION, "normalize": NORMALIZE}


@hookimpl
def register_methods(register) -> None:
    register(MethodSpec(
        name="deeplift",
        score=f"{BRIDGE}:deeplift_scores",
        summary="captum LayerDeepLift (rescale rule) at each component, zero input baseline (CNNs only)",
        families=frozenset({"cnn"}),  # captum's DeepLift has no rule for GELU, functional softmax, q k^T
        params=LAYER_OPTIONS,
    ))
    register(MethodSpec(
        name="gradient_shap",
        score=f"{BRIDGE}:gradient_shap_scores",
        summary="captum LayerGradientShap at each component: expected gradients from a zero baseline, seeded",
        params={"n_samples": IntRange(1, 1000, 20, searched=False),
                "stdevs": FloatRange(0.0, 10.0, 0.0, searched=False), **LAYER_OPTIONS},
        family_params={"transformer": TRANSFORMER_OPTIONS},
    ))
    register(MethodSpec(
        name="conductance",
        score=f"{BRIDGE}:conductance_scores",
        summary="captum LayerConductance at each component along the path from a zero input",
        params={"n_steps": IntRange(1, 1000, 20, searched=False), **LAYER_OPTIONS},
        family_params={"transformer": TRANSFORMER_OPTIONS},
    ))
    register(MethodSpec(
        name="ablation",
        score=f"{BRIDGE}:ablation_scores",
        summary="measured drop of the true-class logit when each component alone is zeroed (captum, exact, costly)",
        families=frozenset(FAMILIES),
        params={"quantity": Categorical(("logit", "loss"), "logit"),
                "aggregation": Categorical(("signed", "abs"), "signed"),
                "normalize": NORMALIZE,
                "batch_components": IntRange(1, 4096, 16, searched=False)},
    ))

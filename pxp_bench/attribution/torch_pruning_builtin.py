"""Built-in method plugin: the pruning literature's criteria, through Torch-Pruning.

Each method is one Torch-Pruning importance evaluated on Torch-Pruning's dependency group of each
component's producing layer (`pxp_bench.attribution.torch_pruning_bridge`), so coupled layers (the
convs feeding one residual sum) get the same scores. They score conv filters and hidden Linear neurons
(CNN classifier neurons, transformer MLP neurons); attention heads are not offered: Torch-Pruning groups
a ``MultiheadAttention``'s embedding channels, not its heads. ``bn_scale`` needs a BatchNorm after each
conv, so it scores CNN filters only (the zoo's classifier Linears have no BatchNorm1d).

Defaults are Torch-Pruning's. Score functions are ``"module:function"`` strings: listing methods never
imports torch or Torch-Pruning.
"""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.params import Categorical, IntRange
from pxp_bench.specs import MethodSpec

BRIDGE = "pxp_bench.attribution.torch_pruning_bridge"
UNITS = frozenset({"filters", "neurons"})

NORMALIZER = Categorical(("mean", "none", "max", "sum", "standarization", "gaussian"), "mean")
"""Torch-Pruning's per-group normaliser (its spelling); ``mean`` divides a group's scores by their mean."""
GROUP_REDUCTION = Categorical(("mean", "sum", "max", "prod", "first"), "mean")
"""How the layers of a dependency group combine; ``first``: the producing layer alone."""
BIAS = Categorical((False, True), False, searched=False)
"""Also count the bias (and a BatchNorm's beta) of the group's producing layers."""
P_NORM = IntRange(1, 4, 2, searched=False)


@hookimpl
def register_methods(register) -> None:
    register(MethodSpec(
        name="l1",
        score=f"{BRIDGE}:l1_scores",
        summary="group L1 norm of the weights a filter / neuron removes, via Torch-Pruning (Li et al., 2017)",
        components=UNITS,
        params={"normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION, "bias": BIAS},
    ))
    register(MethodSpec(
        name="l2",
        score=f"{BRIDGE}:l2_scores",
        summary="group squared L2 norm of the weights a filter / neuron removes, via Torch-Pruning (Fang et al., 2023)",
        components=UNITS,
        params={"normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION, "bias": BIAS},
    ))
    register(MethodSpec(
        name="lamp",
        score=f"{BRIDGE}:lamp_scores",
        summary="LAMP: group magnitude over the sum of the larger ones in its layer (Lee et al., 2021)",
        components=UNITS,
        params={"p": P_NORM, "group_reduction": GROUP_REDUCTION, "bias": BIAS},
    ))
    register(MethodSpec(
        name="bn_scale",
        score=f"{BRIDGE}:bn_scale_scores",
        summary="network slimming: |gamma| of the BatchNorm after each filter (Liu et al., 2017)",
        components=frozenset({"filters"}),
        families=frozenset({"cnn"}),
        params={"normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION},
    ))
    register(MethodSpec(
        name="group_taylor",
        score=f"{BRIDGE}:group_taylor_scores",
        summary="group first-order Taylor |w * dL/dw| of the cross-entropy, via Torch-Pruning (Molchanov et al., 2019)",
        components=UNITS,
        params={"normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION,
                "multivariable": Categorical((False, True), False, searched=False), "bias": BIAS},
    ))
    register(MethodSpec(
        name="hessian",
        score=f"{BRIDGE}:hessian_scores",
        summary="group OBD: w^2 times the empirical Fisher diagonal of the cross-entropy (LeCun et al., 1990)",
        components=UNITS,
        params={"normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION, "bias": BIAS},
    ))
    register(MethodSpec(
        name="fpgm",
        score=f"{BRIDGE}:fpgm_scores",
        summary="FPGM: distance of a filter / neuron to the others of its layer, near the geometric median (He et al., 2019)",
        components=UNITS,
        params={"p": P_NORM, "normalizer": NORMALIZER, "group_reduction": GROUP_REDUCTION},
    ))

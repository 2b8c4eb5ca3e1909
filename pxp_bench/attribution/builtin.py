"""Built-in method plugin: random, magnitude and taylor (score functions are imported on first use)."""

from __future__ import annotations

from pxp_bench.attribution.options import AGGREGATION, NORMALIZE
from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import MethodSpec


@hookimpl
def register_methods(register) -> None:
    register(MethodSpec(
        name="random",
        score="pxp_bench.attribution.baselines:random_scores",
        summary="uniform random scores from the run's seed (the baseline every method must beat)",
    ))
    register(MethodSpec(
        name="magnitude",
        score="pxp_bench.attribution.baselines:magnitude_scores",
        summary="mean |w| of the weights producing each component (data-free)",
        components=frozenset({"filters", "neurons"}),
        params={"normalize": NORMALIZE},
    ))
    register(MethodSpec(
        name="taylor",
        score="pxp_bench.attribution.taylor:taylor_scores",
        summary="first-order Taylor: activation x gradient of the true-class logit (Molchanov et al.)",
        params={"aggregation": AGGREGATION, "normalize": NORMALIZE},
    ))

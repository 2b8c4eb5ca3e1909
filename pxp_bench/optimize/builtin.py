"""Built-in optimizer plugin: Optuna's TPE (default) and Gaussian-process BO, random search, an
exhaustive grid, and Nevergrad's NGOpt; all record their trials in an Optuna study."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import OptimizerSpec

MODULE = "pxp_bench.optimize.optimizers"


@hookimpl
def register_optimizers(register) -> None:
    register(OptimizerSpec("optuna-tpe", f"{MODULE}:tpe", "Optuna's Tree-structured Parzen Estimator (default)"))
    register(OptimizerSpec("optuna-gp", f"{MODULE}:gp", "Optuna's Gaussian-process Bayesian optimisation (the paper's choice)"))
    register(OptimizerSpec("random", f"{MODULE}:random_search", "uniform random search"))
    register(OptimizerSpec("grid", f"{MODULE}:grid", "every point of the searched space once (all-categorical spaces)",
                           prunes=False))
    register(OptimizerSpec("nevergrad", f"{MODULE}:nevergrad", "Nevergrad's NGOpt through ask / tell"))

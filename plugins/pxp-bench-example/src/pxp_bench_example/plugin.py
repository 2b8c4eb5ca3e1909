"""The hooks pxp-bench calls: one method, one model, one dataset, one optimizer."""

from __future__ import annotations

import pxp_bench
from pxp_bench import Categorical, DatasetSpec, FloatRange, MethodSpec, ModelSpec, OptimizerSpec


@pxp_bench.hookimpl
def register_methods(register) -> None:
    register(MethodSpec(
        name="wanda",
        score="pxp_bench_example.wanda:wanda_scores",
        summary="Wanda-style structured importance: |W| x input activation norm summed per unit, compared within each layer",
        components=frozenset({"filters", "neurons", "heads"}),
        families=frozenset({"cnn", "transformer", "lm"}),
        params={
            "exponent": FloatRange(0.0, 2.0, 1.0),
            "compare": Categorical(("layer", "global"), "layer", searched=False),
        },
        presets={"magnitude-like": {"exponent": 0.0}},
    ))


@pxp_bench.hookimpl
def register_models(register) -> None:
    register(ModelSpec(name="faces-cnn", build="pxp_bench_example.faces:build_faces_cnn",
                       summary="a small CNN that tells faces from non-faces (25x25 grey, packaged weights)",
                       family="cnn", default_dataset="lfw-faces"))


@pxp_bench.hookimpl
def register_datasets(register) -> None:
    register(DatasetSpec(name="lfw-faces", load="pxp_bench_example.faces:load_lfw_faces",
                         summary="scikit-image's lfw_subset: 100 faces, 100 non-faces, 25x25 grey (offline)"))


@pxp_bench.hookimpl
def register_optimizers(register) -> None:
    register(OptimizerSpec(name="example-random", run="pxp_bench_example.search:random_search",
                           summary="uniform (log-uniform where declared) random search, drawn by the plugin"))

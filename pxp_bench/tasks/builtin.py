"""Built-in task plugin: image classification and language modelling."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import TaskSpec


@hookimpl
def register_tasks(register) -> None:
    register(TaskSpec(
        name="classification",
        implementation="pxp_bench.tasks.classification:CLASSIFICATION_TASK",
        summary="top-1 accuracy over the run's classes; a method explains the true class's logit",
    ))
    register(TaskSpec(
        name="language_modelling",
        implementation="pxp_bench.tasks.language_modelling:LANGUAGE_MODELLING_TASK",
        summary="next-token top-1 accuracy and perplexity on held-out sequences; a method explains the summed "
                "logits of the true next tokens",
    ))

"""Built-in model plugin: the embedded digits zoo."""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import ModelSpec


@hookimpl
def register_models(register) -> None:
    register(ModelSpec(
        name="digits-vgg",
        build="pxp_bench.models.zoo:build_zoo_model",
        summary="VGG-style CNN with BatchNorm (5 conv, 2 FC), trained on digits",
        family="cnn",
        default_dataset="digits",
    ))
    register(ModelSpec(
        name="digits-resnet",
        build="pxp_bench.models.zoo:build_zoo_model",
        summary="ResNet of torchvision BasicBlocks with downsample shortcuts, trained on digits",
        family="cnn",
        default_dataset="digits",
    ))

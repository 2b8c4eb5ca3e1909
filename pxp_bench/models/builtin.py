"""Built-in model plugin: the embedded digits zoo, every torchvision classifier, every timm model.

torchvision and timm names are listed when the model registry is first used (not for ``--help``).
"""

from __future__ import annotations

from pxp_bench.hookspecs import hookimpl
from pxp_bench.specs import ModelSpec

PRETRAINED = "pxp_bench.models.pretrained"
ZOO = {
    "digits-vgg": ("cnn", "VGG-style CNN with BatchNorm (5 conv, 2 FC), trained on digits"),
    "digits-resnet": ("cnn", "ResNet of torchvision BasicBlocks with downsample shortcuts, trained on digits"),
    "digits-vit": ("transformer", "ViT (torchvision), 4 blocks x 4 heads, width 64, narrow MLP (32), trained on digits"),
}


@hookimpl
def register_models(register) -> None:
    from pxp_bench.models.pretrained import family_of, timm_names, torchvision_names

    for name, (family, summary) in ZOO.items():
        register(ModelSpec(name=name, build="pxp_bench.models.zoo:build_zoo_model", summary=summary,
                           family=family, default_dataset="digits"))
    for name in torchvision_names():
        register(ModelSpec(name=name, build=f"{PRETRAINED}:build_torchvision", family=family_of(name),
                           summary="torchvision classifier (--weights default | none | FILE)",
                           default_dataset="imagenet"))
    for name in timm_names():
        register(ModelSpec(name=name, build=f"{PRETRAINED}:build_timm", family=family_of(name),
                           summary="timm model (--weights default | none | FILE)",
                           default_dataset="imagenet"))

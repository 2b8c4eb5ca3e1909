"""torchvision and timm classifiers: pretrained, random or local weights, preprocessing from metadata.

``weights``: ``None`` / ``"default"`` = the library's default pretrained weights (downloaded into its
cache on first use), ``"none"`` = random init with the classifier sized to the dataset, or a path to a
safetensors file / state dict (loaded with ``weights_only=True``). Preprocessing comes from the weights'
metadata (torchvision's ``weights.transforms()``, timm's data config), never from hand-typed constants.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from pxp_bench.errors import CheckpointError, ConfigError
from pxp_bench.models.checkpoints import apply_state_dict, file_sha256, load_state_dict
from pxp_bench.specs import LoadedModel

TIMM_PREFIX = "timm/"
TRANSFORMER_PATTERN = re.compile(
    r"^(vit|deit|swin|beit|eva|cait|xcit|levit|pit|tnt|crossvit|convit|twins|mvit|maxvit|coat|volo|flexivit)"
)


def family_of(name: str) -> str:
    """``transformer`` for attention-based architectures, else ``cnn`` (by the library's name)."""
    return "transformer" if TRANSFORMER_PATTERN.match(name.removeprefix(TIMM_PREFIX)) else "cnn"


def torchvision_names() -> list[str]:
    import torchvision.models
    from torchvision.models import list_models

    return list_models(module=torchvision.models)


def timm_names() -> list[str]:
    import timm

    return [TIMM_PREFIX + name for name in timm.list_models()]


def _offline_error(name: str, cache: str, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"cannot fetch the pretrained weights of '{name}' ({type(exc).__name__}: {str(exc)[:200]}). On a "
        f"machine without network access, put the weights file into {cache} (the same file name the "
        f"library downloads), or pass --weights PATH to a local checkpoint, or --weights none for random "
        f"weights."
    )


def _last_linear(model: nn.Module) -> tuple[str, nn.Linear] | None:
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


RANDOM_SEED = 0


def _random_model(create: Callable[[], nn.Module]) -> nn.Module:
    """Random weights from a fixed seed (without touching the caller's RNG state).

    Some architectures (torchvision ViTs) zero-initialise their head; random-weight runs need
    non-constant logits, so such a head gets a small truncated-normal init instead.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        model = create()
        last = _last_linear(model)
        if last is not None and not last[1].weight.detach().any():
            nn.init.trunc_normal_(last[1].weight, std=0.02)
    return model


def _from_checkpoint(name: str, weights: str, create: Callable[..., nn.Module]) -> tuple[nn.Module, str]:
    """``create()`` with its classifier sized to the checkpoint at ``weights`` (read from the classifier's
    weight when the checkpoint has it), loaded strictly; and the weights' identity."""
    path = Path(weights)
    state = load_state_dict(path)
    model = create()
    head = _last_linear(model)
    weight = state.get(f"{head[0]}.weight") if head else None
    if weight is not None and weight.ndim == 2 and weight.shape[0] != head[1].out_features:
        model = create(num_classes=int(weight.shape[0]))
    apply_state_dict(model, state, path, name)
    return model, f"file:{file_sha256(path)}"


def _input_shape(transform: Callable) -> tuple[int, int, int]:
    from PIL import Image

    return tuple(transform(Image.new("RGB", (256, 256))).shape)


def build_torchvision(name: str, weights: str | None = None, num_classes: int | None = None,
                      image_size: int | None = None) -> LoadedModel:
    """A torchvision classification model by its torchvision name."""
    from torchvision.models import get_model, get_model_weights

    default_weights = get_model_weights(name).DEFAULT
    transform_options = {"crop_size": image_size, "resize_size": image_size} if image_size else {}
    transform = default_weights.transforms(**transform_options)
    extra = {"image_size": image_size} if image_size and name.startswith("vit_") else {}
    if weights in (None, "default"):
        if image_size and name.startswith("vit_"):
            raise ConfigError(f"--image-size needs --weights none for '{name}': its pretrained weights are for "
                              f"{default_weights.transforms().crop_size[0]} px.")
        try:
            model = get_model(name, weights=default_weights)
        except (OSError, RuntimeError) as exc:
            raise _offline_error(name, f"{torch.hub.get_dir()}/checkpoints", exc) from None
        identity = f"torchvision:{default_weights}"
    elif weights == "none":
        try:
            model = _random_model(lambda: get_model(name, weights=None, num_classes=num_classes or 1000, **extra))
        except (AssertionError, ValueError) as exc:
            raise ConfigError(f"'{name}' cannot be built with --image-size {image_size}: {exc or 'unsupported size'}."
                              ) from None
        identity = f"random:seed{RANDOM_SEED}"
    else:
        model, identity = _from_checkpoint(name, weights, lambda **size: get_model(name, weights=None, **size, **extra))
    model.eval()
    head = _last_linear(model)
    classes = head[1].out_features if head else int(len(default_weights.meta["categories"]))
    return LoadedModel(model, family_of(name), classes, _input_shape(transform), identity, transform)


def build_timm(name: str, weights: str | None = None, num_classes: int | None = None,
               image_size: int | None = None) -> LoadedModel:
    """A timm model, registered as ``timm/<timm name>``."""
    import timm
    from timm.data import create_transform, resolve_data_config

    timm_name = name.removeprefix(TIMM_PREFIX)
    extra = {"img_size": image_size} if image_size and family_of(name) == "transformer" else {}
    if weights in (None, "default"):
        try:
            model = timm.create_model(timm_name, pretrained=True, **extra)
        except (OSError, RuntimeError, ValueError) as exc:
            import os

            cache = os.environ.get("HF_HUB_CACHE") or os.path.join(
                os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub")
            raise _offline_error(name, cache, exc) from None
        identity = f"timm:{timm_name}.{model.pretrained_cfg.get('tag') or 'default'}"
    elif weights == "none":
        model = _random_model(
            lambda: timm.create_model(timm_name, pretrained=False, num_classes=num_classes or 1000, **extra))
        identity = f"random:seed{RANDOM_SEED}"
    else:
        model, identity = _from_checkpoint(
            name, weights, lambda **size: timm.create_model(timm_name, pretrained=False, **size, **extra))
    model.eval()
    config = resolve_data_config({}, model=model)
    if image_size:
        config["input_size"] = (config["input_size"][0], image_size, image_size)
        config["crop_pct"] = 1.0
    transform = create_transform(**config)
    return LoadedModel(model, family_of(name), model.num_classes, _input_shape(transform), identity, transform)

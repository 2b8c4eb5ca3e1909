"""The embedded model zoo: packaged, manifest-verified checkpoints of small models trained on digits."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pxp_bench.errors import CheckpointError, ConfigError
from pxp_bench.models.architectures import ARCHITECTURES
from pxp_bench.models.builtin import ZOO
from pxp_bench.models.checkpoints import (
    apply_state_dict,
    file_sha256,
    load_state_dict,
    manifest_path,
    require_file,
    verify_against_manifest,
)
from pxp_bench.specs import LoadedModel

ZOO_CLASSES = 10
ZOO_INPUT_SHAPE = (1, 32, 32)


def packaged_checkpoint(name: str) -> Path:
    """Path of the checkpoint shipped inside the package for zoo model ``name``."""
    return Path(str(resources.files("pxp_bench.models") / "checkpoints" / f"{name}.safetensors"))


def _retrain_hint(name: str) -> str:
    return (f"Retrain it with `pxp-bench zoo train {name} --out DIR` and pass "
            f"`--weights DIR/{name}.safetensors`, or reinstall pxp-bench.")


def checkpoint_sha256(name: str, checkpoint: Path, *, packaged: bool) -> str:
    """The sha256 of a checkpoint of zoo model ``name``, verified against the manifest beside it (same
    stem, ``.json``); packaged checkpoints must have one, user checkpoints may."""
    hint = _retrain_hint(name)
    manifest = manifest_path(checkpoint)
    if packaged and not checkpoint.is_file():
        raise CheckpointError(f"the packaged checkpoint of '{name}' is missing ({checkpoint}). {hint}")
    if packaged and not manifest.is_file():
        raise CheckpointError(f"the manifest of the packaged checkpoint of '{name}' is missing ({manifest}), so "
                              f"the checkpoint cannot be verified. {hint}")
    require_file(checkpoint)
    return verify_against_manifest(checkpoint, manifest, hint) if manifest.is_file() else file_sha256(checkpoint)


def build_zoo_model(name: str, weights: str | None = None, num_classes: int | None = None,
                    image_size: int | None = None) -> LoadedModel:
    """Build zoo model ``name`` with its packaged weights, or with the checkpoint at ``weights``."""
    if image_size not in (None, ZOO_INPUT_SHAPE[-1]):
        raise ConfigError(f"zoo model '{name}' takes {ZOO_INPUT_SHAPE[-1]} px inputs; drop --image-size.")
    if weights == "none":
        raise ConfigError(f"--weights none (random init) applies to torchvision and timm models; zoo model '{name}' "
                          f"is only useful trained: drop --weights for its packaged weights, or train one with "
                          f"`pxp-bench zoo train {name} --out DIR` and pass --weights DIR/{name}.safetensors.")
    if num_classes not in (None, ZOO_CLASSES):
        raise ConfigError(f"zoo model '{name}' has {ZOO_CLASSES} outputs; it cannot classify {num_classes} classes.")
    packaged = weights in (None, "default")
    checkpoint = packaged_checkpoint(name) if packaged else Path(weights)
    identity = ("packaged:" if packaged else "file:") + checkpoint_sha256(name, checkpoint, packaged=packaged)
    model = ARCHITECTURES[name]()
    apply_state_dict(model, load_state_dict(checkpoint), checkpoint, name)
    model.eval()
    return LoadedModel(model, ZOO[name][0], ZOO_CLASSES, ZOO_INPUT_SHAPE, identity)

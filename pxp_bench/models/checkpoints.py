"""Checkpoints and their manifests: safe loading (never unpickling code) and sha256 verification."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from pathlib import Path

import torch

from pxp_bench.errors import CheckpointError


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"manifest {path} is unreadable: {exc}.") from None
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise CheckpointError(f"manifest {path} has no 'sha256' entry.")
    return manifest


def verify_against_manifest(checkpoint: Path, manifest: dict, retrain_hint: str) -> str:
    """Return the checkpoint's sha256, or raise if it differs from the manifest's."""
    actual = file_sha256(checkpoint)
    if actual != manifest["sha256"]:
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match its manifest: sha256 {actual[:12]}... != "
            f"{manifest['sha256'][:12]}... The file is corrupt or was replaced. {retrain_hint}"
        )
    return actual


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file or a plain state dict (``weights_only=True``: no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist. Check the path passed to --weights.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: {exc}.") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file.") from None
        raise CheckpointError(
            f"checkpoint {path} was refused: it carries pickled objects ({found.group(1)}) that loading "
            "would execute. Save it with safetensors or as a plain state dict of tensors."
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file: {exc}.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors.")
    return state


def apply_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` strictly; mismatched keys or shapes name the checkpoint and the problem."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {source} does not fit this model: {' '.join(line.strip() for line in first[:3])}"
        ) from None

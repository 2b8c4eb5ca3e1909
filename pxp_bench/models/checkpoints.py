"""Checkpoints and their manifests: safe loading (never unpickling code) and sha256 verification."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import reprlib
import warnings
from pathlib import Path

import torch

from pxp_bench.errors import CheckpointError

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


MANIFEST_FIELDS = {
    "sha256": ("64 lowercase hex digits", lambda value: isinstance(value, str) and SHA256_HEX.fullmatch(value)),
    "eval_accuracy": ("a number", lambda value: _is_integer(value) or isinstance(value, float)),
    "epochs": ("an integer", _is_integer),
    "seed": ("an integer", _is_integer),
}
"""Typed manifest fields: ``sha256`` is required, the others are checked when present."""
SHOWN_KEYS = 2
"""How many keys of each kind a mismatch report names."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def verify_against_manifest(checkpoint: Path, manifest: Path, retrain_hint: str) -> str:
    """Return the checkpoint's sha256, or raise if the manifest is malformed or names another sha256."""
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"manifest {manifest} is unreadable: {exc}. {retrain_hint}") from None
    if not isinstance(entries, dict) or "sha256" not in entries:
        raise CheckpointError(f"manifest {manifest} has no 'sha256' entry. {retrain_hint}")
    for key, (expected, valid) in MANIFEST_FIELDS.items():
        if key in entries and not valid(entries[key]):
            raise CheckpointError(f"manifest {manifest} is malformed: '{key}' must be {expected}, got "
                                  f"{reprlib.repr(entries[key])}. {retrain_hint}")
    actual = file_sha256(checkpoint)
    if actual != entries["sha256"]:
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match its manifest: sha256 {actual[:12]}... != "
            f"{entries['sha256'][:12]}... The file is corrupt or was replaced. {retrain_hint}"
        )
    return actual


ACCEPTED = ("--weights takes a .safetensors file or a torch state dict (torch.save(model.state_dict(), PATH)), "
            "or default / none")
"""What a checkpoint may be, said where a file is not one."""
TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")
"""The first bytes of a file `torch.load` reads: a zip archive (torch >= 1.6) or a pickle of protocol 2 or
more (the legacy format). Anything else is not a torch file, and torch's unpickler fails on it with a
KeyError or IndexError instead of saying so."""


def require_file(path: Path) -> None:
    """Raise unless ``path`` is a checkpoint file (a folder, a missing path or a JSON file is said plainly)."""
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder; pass the checkpoint file inside it to --weights.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist. Check the path passed to --weights.")
    if path.suffix == ".json":  # a manifest, a parameters file or a result: never weights
        raise CheckpointError(f"{path} is a JSON file, not a checkpoint (a zoo checkpoint's manifest is the JSON "
                              f"beside it); {ACCEPTED}.")


def _first_sentence(exc: Exception) -> str:
    """The first sentence of a library's (often multi-line) message, or the exception's type."""
    text = str(exc).strip()
    return text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(exc).__name__


def _refusal(path: Path, exc: pickle.UnpicklingError) -> CheckpointError:
    """The weights-only unpickler's multi-line error, said in one line."""
    save = "torch.save(model.state_dict(), PATH) or safetensors' save_file(model.state_dict(), PATH)"
    found = re.search(r"GLOBAL (\S+)", str(exc))
    if found is None and "Unsupported operand" in str(exc):
        return CheckpointError(f"checkpoint {path} is corrupt or not a torch file that loads safely (one saved "
                               f"with a pickle_protocol above 2 is not). Re-save it with {save}.")
    held = f" ({found.group(1)})" if found else ""
    return CheckpointError(f"checkpoint {path} was refused: it holds pickled Python objects{held}, which loading "
                           f"would execute. Save only the weights: {save}.")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file or a plain state dict (``weights_only=True``: no pickled code runs)."""
    path = Path(path)
    require_file(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path} is not a valid safetensors file: {exc}.") from None
    with open(path, "rb") as handle:
        start = handle.read(4)
    if not start.startswith(TORCH_FILE_STARTS):
        raise CheckpointError(f"{path} is not a checkpoint: it is neither a safetensors file (named .safetensors) "
                              f"nor a file torch.save wrote; {ACCEPTED}.")
    try:
        with warnings.catch_warnings():  # torch's own advice (pickle protocols, TorchScript) is not the user's
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refusal(path, exc) from None
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, IndexError) as exc:  # a damaged pickle
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch file ({_first_sentence(exc)}). "
                              "Re-save or re-download it.") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors.")
    return state


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:SHOWN_KEYS]) + (", ..." if len(keys) > SHOWN_KEYS else "")


def _size(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "scalar"


def apply_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path, name: str) -> None:
    """Load ``state`` strictly; a checkpoint of another model is summarised (counts, first keys) in one line.

    torch decides what fits (it fills in e.g. an old BatchNorm's missing ``num_batches_tracked``); only
    when it refuses is the mismatch worked out, in place of its key dump.
    """
    try:
        model.load_state_dict(state, strict=True)
        return
    except RuntimeError as exc:
        failure = str(exc).strip().splitlines()[0]
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [f"{key} {_size(state[key])} vs {_size(value)}"
                for key, value in expected.items() if key in state and state[key].shape != value.shape]
    problems = [f"{len(keys)} {kind} ({_first(keys)})" for kind, keys in
                (("missing", missing), ("unexpected", unexpected), ("of another shape, file vs model", reshaped))
                if keys]
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not fit model '{name}', keys: {'; '.join(problems)}. Pass a checkpoint "
            f"saved from '{name}'."
        )
    raise CheckpointError(f"checkpoint {source} does not fit model '{name}': {failure}")

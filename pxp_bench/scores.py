"""Saved component scores (safetensors): evaluate a curve again without rescoring.

The file holds one 1-D tensor per group, and metadata saying which model, weights, components and
method produced them; loading refuses a file whose groups or sizes differ from the model's components.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from pxp_bench.components import Components
from pxp_bench.errors import ConfigError

FORMAT = "pxp-bench-scores/1"


@dataclass(frozen=True)
class SavedScores:
    scores: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    """``model``, ``weights``, ``components``, ``method``, ``variant``, ``params``, ``seed``, ``classes``."""


def encode_scores(components: Components, scores: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]) -> bytes:
    """``scores`` for ``components`` as safetensors bytes, with ``metadata`` stored as JSON strings."""
    from safetensors.torch import save

    header = {key: json.dumps(value) for key, value in metadata.items()}
    header["format"] = FORMAT
    header["groups"] = json.dumps([[g.name, g.size] for g in components.groups])
    tensors = {g.name: scores[g.name].detach().float().cpu().contiguous() for g in components.groups}
    return save(tensors, metadata=header)


def load_scores(path: Path, components: Components) -> SavedScores:
    """Read saved scores and check they cover exactly ``components`` (names and sizes)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scores file {path} does not exist. Write one with `pxp-bench run --save-scores`.")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
            scores = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"scores file {path} is not a valid safetensors file: {exc}.") from None
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a pxp-bench scores file (format {header.get('format')!r}).")
    metadata = {key: json.loads(value) for key, value in header.items() if key != "format"}
    saved_groups = [tuple(group) for group in metadata.pop("groups")]
    expected = [(g.name, g.size) for g in components.groups]
    if metadata.get("components") != components.kind or saved_groups != expected:
        raise ConfigError(
            f"scores file {path} does not match this model's {components.kind}: it was saved for "
            f"{metadata.get('model')} / {metadata.get('components')} with {len(saved_groups)} groups "
            f"({sum(size for _, size in saved_groups)} components); this model has {len(expected)} groups "
            f"({components.total} components). Rescore, or pass the matching --model / --components."
        )
    return SavedScores(scores, metadata)

"""Reproducible training of the zoo models on the digits train split, written with a manifest."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from pxp_bench.data.digits import load_digits_splits
from pxp_bench.errors import ConfigError
from pxp_bench.evaluate import accuracy
from pxp_bench.models.architectures import ARCHITECTURES
from pxp_bench.models.checkpoints import file_sha256, manifest_path
from pxp_bench.seeds import check_seed
from pxp_bench.results import atomic_write_bytes, atomic_write_text, ensure_writable_dir

DEFAULT_EPOCHS = {"digits-vgg": 30, "digits-resnet": 30, "digits-vit": 40}
DEFAULT_SEED = 0


@dataclass(frozen=True)
class TrainedCheckpoint:
    checkpoint: Path
    manifest: Path
    eval_accuracy: float
    sha256: str


def checkpoint_target(out_dir: Path, name: str, force: bool) -> Path:
    """``out_dir/name.safetensors``; an existing checkpoint or manifest is refused unless ``force`` (checked
    before training, so a refusal costs nothing)."""
    checkpoint = Path(out_dir) / f"{name}.safetensors"
    if not force:
        for path in (checkpoint, manifest_path(checkpoint)):
            if path.exists():
                raise ConfigError(f"{path} exists; pass --force to replace it, or choose another --out.")
    return checkpoint


def write_checkpoint(model: torch.nn.Module, checkpoint: Path, eval_accuracy: float, fields: dict) -> TrainedCheckpoint:
    """Write ``model``'s weights and the manifest beside them: ``fields`` plus sha256 and the environment."""
    from safetensors.torch import save

    atomic_write_bytes(checkpoint, save({k: v.contiguous() for k, v in model.state_dict().items()}))
    sha = file_sha256(checkpoint)
    manifest = {"model": checkpoint.stem, "file": checkpoint.name, "sha256": sha, **fields,
                "torch": torch.__version__, "python": platform.python_version(), "platform": sys.platform}
    atomic_write_text(manifest_path(checkpoint), json.dumps(manifest, indent=2) + "\n")
    return TrainedCheckpoint(checkpoint, manifest_path(checkpoint), eval_accuracy, sha)


def _shifted(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations of up to ``max_shift`` pixels (zero-padded): cheap augmentation."""
    padded = F.pad(images, [max_shift] * 4)
    size = images.shape[-1]
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[..., dy:dy + size, dx:dx + size]


def train_zoo_model(
    name: str,
    out_dir: Path,
    *,
    epochs: int | None = None,
    seed: int = DEFAULT_SEED,
    command: str = "",
    force: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainedCheckpoint:
    """Train zoo model ``name`` on digits' train split only; write ``name.safetensors`` + manifest, replacing
    earlier ones only with ``force`` (checked before training, so a refusal costs nothing)."""
    if name not in ARCHITECTURES:
        raise ConfigError(f"'{name}' is not a zoo model; zoo models: {', '.join(sorted(ARCHITECTURES))}.")
    epochs = DEFAULT_EPOCHS[name] if epochs is None else epochs
    if epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}.")
    check_seed(seed)
    checkpoint = checkpoint_target(out_dir, name, force)
    ensure_writable_dir(Path(out_dir))
    splits = load_digits_splits()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = ARCHITECTURES[name]()
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        loader = DataLoader(splits.train, batch_size=64, shuffle=True, generator=generator)
        for epoch in range(epochs):
            model.train()
            total = 0.0
            for images, labels in loader:
                loss = F.cross_entropy(model(_shifted(images, generator)), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(labels)
            scheduler.step()
            if on_epoch is not None:
                on_epoch(epoch + 1, total / len(splits.train))
    finally:
        torch.use_deterministic_algorithms(deterministic)
    model.eval()
    eval_accuracy = accuracy(model, DataLoader(splits.eval, batch_size=256), list(range(10)), torch.device("cpu"))
    return write_checkpoint(model, checkpoint, eval_accuracy, {
        "eval_accuracy": round(eval_accuracy, 6),
        "dataset": "digits",
        "trained_on": "train split (60 %)",
        "epochs": epochs,
        "seed": seed,
        "command": command or f"pxp-bench zoo train {name} --epochs {epochs} --seed {seed}",
    })

"""Faces vs non-faces, offline: scikit-image's ``lfw_subset`` (200 grey 25x25 crops, the first 100 faces
from Labeled Faces in the Wild, the rest non-face patches) and a small CNN trained on it.

Splits per class, fixed by a seeded permutation: 50 train (reference samples are drawn here), 20 tune,
30 eval.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from pxp_bench import CheckpointError, ConfigError, DatasetSplits, LoadedModel
from pxp_bench.api import LabelledTensors

CLASSES = ["face", "non-face"]
INPUT_SHAPE = (1, 25, 25)
SPLIT_SIZES = {"train": 50, "tune": 20, "eval": 30}
SPLIT_SEED = 0
WEIGHTS_FILE = "faces-cnn.safetensors"


def _images() -> tuple[torch.Tensor, list[int]]:
    from skimage.data import lfw_subset

    images = torch.as_tensor(lfw_subset(), dtype=torch.float32)  # (200, 25, 25) in [0, 1]
    inputs = (images.unsqueeze(1) - 0.5) / 0.25
    return inputs, [0] * 100 + [1] * 100


def load_lfw_faces(name: str, root: str | None) -> DatasetSplits:
    inputs, targets = _images()
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    indices: dict[str, list[int]] = {split: [] for split in SPLIT_SIZES}
    for label in range(len(CLASSES)):
        members = [i for i, t in enumerate(targets) if t == label]
        order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
        start = 0
        for split, size in SPLIT_SIZES.items():
            indices[split] += order[start:start + size]
            start += size
    splits = {split: LabelledTensors(inputs[rows], [targets[i] for i in rows]) for split, rows in indices.items()}
    return DatasetSplits(train=splits["train"], eval=splits["eval"], tune=splits["tune"],
                         num_classes=len(CLASSES), class_names=list(CLASSES), input_shape=INPUT_SHAPE)


def faces_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, len(CLASSES)),
    )


def packaged_weights() -> Path:
    return Path(str(resources.files("pxp_bench_example") / WEIGHTS_FILE))


def build_faces_cnn(name: str, weights: str | None = None, num_classes: int | None = None,
                    image_size: int | None = None) -> LoadedModel:
    from safetensors.torch import load_file

    if num_classes not in (None, len(CLASSES)):
        raise ConfigError(f"model '{name}' has {len(CLASSES)} outputs; it cannot classify {num_classes} classes.")
    if image_size not in (None, INPUT_SHAPE[-1]):
        raise ConfigError(f"model '{name}' takes {INPUT_SHAPE[-1]} px inputs; drop --image-size.")
    torch.manual_seed(0)
    model = faces_cnn()
    if weights == "none":
        return LoadedModel(model.eval(), "cnn", len(CLASSES), INPUT_SHAPE, "random:seed0")
    path = packaged_weights() if weights in (None, "default") else Path(weights)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}. Pass --weights FILE.safetensors, or run "
                              "`python -m pxp_bench_example.train` to make them.")
    try:
        model.load_state_dict(load_file(str(path)))
    except Exception as exc:  # wrong file or architecture: one line
        raise CheckpointError(f"{path} does not hold faces-cnn weights: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0]}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    origin = "packaged" if weights in (None, "default") else "file"
    return LoadedModel(model.eval(), "cnn", len(CLASSES), INPUT_SHAPE, f"{origin}:{digest}")

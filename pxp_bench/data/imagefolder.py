"""Image-folder datasets: ``imagenet`` (ILSVRC-2012) and ``imagefolder`` (any classes, same layout).

Layout: ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*.jpg``; a class's output row is its index
in the sorted folder names (for ImageNet the sorted WordNet ids, the standard order). Images are
decoded lazily; the model's preprocessing is attached as the datasets' ``transform``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pxp_bench.errors import DataError
from pxp_bench.specs import DatasetSplits

WORDNET_ID = re.compile(r"^n\d{8}$")
VAL_REORGANISATION = (
    "ImageNet's val/ must hold one folder per WordNet id: reorganise the flat validation images with "
    "the ILSVRC-2012 validation labels (the widely used valprep.sh script does this)."
)


def read_image(path: str):
    """Open an image as RGB, naming the file when it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}. Remove or replace the file.") from None


def _class_folders(split: Path) -> list[str]:
    return sorted(entry.name for entry in split.iterdir() if entry.is_dir())


def _split(root: Path, name: str, dataset: str):
    from torchvision.datasets import ImageFolder

    folder = root / name
    if not folder.is_dir():
        raise DataError(f"dataset '{dataset}' expects {folder}/ with one folder per class; it is missing.")
    try:
        return ImageFolder(str(folder), loader=read_image)
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {exc}. Every class folder needs at least one image.") from None


def load_image_folders(name: str, root: str | Path | None) -> DatasetSplits:
    """The ``train`` and ``val`` splits of an image-folder dataset (``imagenet`` adds its own checks)."""
    if root is None:
        raise DataError(f"dataset '{name}' needs its files: pass --data PATH.")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder.")
    val = root / "val"
    if name == "imagenet" and val.is_dir() and not _class_folders(val) and any(val.iterdir()):
        raise DataError(f"{val} holds images directly. {VAL_REORGANISATION}")
    train_split, val_split = _split(root, "train", name), _split(root, "val", name)
    if train_split.classes != val_split.classes:
        only_train = sorted(set(train_split.classes) - set(val_split.classes))
        only_val = sorted(set(val_split.classes) - set(train_split.classes))
        raise DataError(
            f"{root}: train/ and val/ have different class folders (only in train: {only_train[:5]}, only in "
            f"val: {only_val[:5]}). Both splits need the same classes."
        )
    if name == "imagenet":
        odd = [c for c in train_split.classes if not WORDNET_ID.match(c)]
        if odd:
            raise DataError(
                f"{root} does not look like ImageNet: class folders must be WordNet ids such as n01440764, "
                f"found {odd[:3]}. Use --dataset imagefolder for other class names."
            )
    return DatasetSplits(
        train=train_split,
        eval=val_split,
        num_classes=len(train_split.classes),
        class_names=list(train_split.classes),
        input_shape=(),
    )

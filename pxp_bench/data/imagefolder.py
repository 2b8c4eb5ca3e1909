"""Image-folder datasets: ``imagenet`` (ILSVRC-2012) and ``imagefolder`` (any classes, same layout).

Layout: ``ROOT/train/<class>/*.jpg`` and ``ROOT/val/<class>/*.jpg``; a class's output row is its index
in the sorted folder names (for ImageNet the sorted WordNet ids, the standard order). Images are
decoded lazily; the model's preprocessing is attached as the datasets' ``transform``. This module is
loaded only through the datasets' ``load`` strings, so importing torchvision here costs listings nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS, ImageFolder

from pxp_bench.errors import DataError
from pxp_bench.specs import DatasetSplits

WORDNET_ID = re.compile(r"^n\d{8}$")
VAL_REORGANISATION = (
    "ImageNet's val/ must hold one folder per WordNet id: reorganise the flat validation images with "
    "the ILSVRC-2012 validation labels (the widely used valprep.sh script does this)."
)


def _unreadable(path: str, exc: Exception) -> DataError:
    # UnidentifiedImageError is an OSError that repeats the path
    reason = "not an image format PIL can decode" if isinstance(exc, UnidentifiedImageError) else exc
    return DataError(f"cannot read image {path}: {reason}. Remove or replace the file.")


def read_image(path: str):
    """Open an image as RGB, naming the file when it cannot be decoded."""
    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None


class ImageFiles(ImageFolder):
    """An `ImageFolder` that can check, cheaply, that the files a run will read decode
    (`pxp_bench.guards.check_readable` calls it before scoring)."""

    def check_readable(self, indices: Iterable[int]) -> None:
        """Decode the files at ``indices`` at 1/8 scale (PIL's ``draft``: a JPEG's DCT scaling), naming the
        first that fails. The decoder still reads every byte, so a truncated file shows as in a full decode,
        at a fraction of its cost; formats without draft decoding are decoded in full."""
        for index in indices:
            path = self.samples[index][0]
            try:
                with open(path, "rb") as handle:
                    image = Image.open(handle)
                    image.draft("RGB", (1, 1))
                    image.load()
            except (OSError, ValueError) as exc:
                raise _unreadable(path, exc) from None


def _split(root: Path, name: str, dataset: str):
    folder = root / name
    if not folder.is_dir():
        raise DataError(f"dataset '{dataset}' expects {folder}/ with one folder per class; it is missing.")
    loose = sorted(entry.name for entry in folder.iterdir()
                   if entry.is_file() and entry.suffix.lower() in IMG_EXTENSIONS)
    if loose:
        hint = VAL_REORGANISATION if (dataset, name) == ("imagenet", "val") else (
            f"Move them into one folder per class ({folder}/<class>/{loose[0]}).")
        raise DataError(f"{folder} holds {len(loose)} image files directly (such as {loose[0]}); images must sit "
                        f"in class folders. {hint}")
    try:
        return ImageFiles(str(folder), loader=read_image)
    except FileNotFoundError as exc:
        raise DataError(f"{folder}: {str(exc).rstrip('. ')}. Every class folder needs at least one image.") from None


def load_image_folders(name: str, root: str | Path | None) -> DatasetSplits:
    """The ``train`` and ``val`` splits of an image-folder dataset (``imagenet`` adds its own checks)."""
    if root is None:
        raise DataError(f"dataset '{name}' needs its files: pass --data PATH.")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder.")
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

"""`check_model` and `check_dataset`: a model builds and is deterministic; a dataset's splits are labelled,
shaped as declared, and load the same twice. `write_jpeg_folder`: an ImageNet-layout folder of generated JPEGs
to run them (and whole runs) on."""

from __future__ import annotations

from pathlib import Path

import torch

from pxp_bench.errors import ComponentError, DataError
from pxp_bench.guards import check_items
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.specs import FAMILIES, LANGUAGE_MODELLING, DatasetSpec, ModelSpec
from pxp_bench.testing.kit import FAMILY_KINDS, ConformanceError, fail, imported, spec_from


def check_model(model: ModelSpec | str, *, weights: str | None = None, plugins: Plugins | None = None):
    """Build ``model`` (default weights, or ``weights``) for its default dataset and check it; returns
    the `LoadedModel`."""
    from pxp_bench.components import discover_components
    from pxp_bench.specs import LoadedModel

    plugins = plugins or get_plugins()
    spec = spec_from(plugins.models, model, "model")
    owner = f"model '{spec.name}'"
    if spec.family not in FAMILIES:
        fail(owner, f"family '{spec.family}' is not one of {list(FAMILIES)}.")
    num_classes = None
    if spec.default_dataset is not None:
        num_classes = check_dataset(spec.default_dataset, plugins=plugins).num_classes
    build_model = imported(owner, spec.load_build)

    def build() -> LoadedModel:
        loaded = build_model(spec.name, weights=weights, num_classes=num_classes, image_size=None)
        if not isinstance(loaded, LoadedModel):
            fail(owner, f"build returned {type(loaded).__name__}; return a pxp_bench.LoadedModel.")
        return loaded

    loaded = build()
    if loaded.family != spec.family:
        fail(owner, f"built a '{loaded.family}' model but is registered as '{spec.family}'.")
    if not isinstance(loaded.weights, str) or not loaded.weights:
        fail(owner, "LoadedModel.weights must name the weights (e.g. 'packaged:<sha256>', 'random:seed0').")
    if num_classes is not None and loaded.num_classes != num_classes:
        fail(owner, f"has {loaded.num_classes} classes; its default dataset '{spec.default_dataset}' has {num_classes}.")
    module = loaded.module.eval()
    sequences = loaded.task == LANGUAGE_MODELLING  # token ids in, (batch, tokens, vocabulary) out
    example = torch.zeros(2, *loaded.input_shape, dtype=torch.long if sequences else torch.float32)
    with torch.no_grad():
        logits = module(example)
    expected = (2, *loaded.input_shape) if sequences else (2, loaded.num_classes)
    if tuple(logits.shape[:len(expected)]) != expected or not torch.isfinite(logits).all():
        fail(owner, f"maps a batch of 2 inputs of shape {tuple(loaded.input_shape)} to {tuple(logits.shape)}; "
                    f"expected {expected}{' x vocabulary' if sequences else ''} finite logits.")
    reasons = []
    for kind in FAMILY_KINDS[spec.family]:  # an MLP registered as a CNN has neurons, not filters
        try:
            discover_components(module, kind, example[:1])
            break
        except ComponentError as exc:
            reasons.append(str(exc))
    else:
        fail(owner, f"has no {' or '.join(FAMILY_KINDS[spec.family])} pxp-bench can find: {reasons[0]}")
    twin = build()
    first, second = module.state_dict(), twin.module.state_dict()
    if set(first) != set(second) or any(not torch.equal(first[k], second[k]) for k in first) \
            or twin.weights != loaded.weights:
        fail(owner, "two builds differ; seed any random initialisation (e.g. torch.manual_seed in build).")
    return loaded


def check_dataset(dataset: DatasetSpec | str, *, root: str | None = None, plugins: Plugins | None = None):
    """Load ``dataset`` (from ``root`` when it needs one) and check its splits; returns the `DatasetSplits`."""
    from pxp_bench.specs import DatasetSplits

    plugins = plugins or get_plugins()
    spec = spec_from(plugins.datasets, dataset, "dataset")
    owner = f"dataset '{spec.name}'"
    if spec.needs_root and root is None:
        fail(owner, "needs a root folder: pass root= to check_dataset.")
    load = imported(owner, spec.load_splits)
    splits = load(spec.name, root)
    if not isinstance(splits, DatasetSplits):
        fail(owner, f"load returned {type(splits).__name__}; return a pxp_bench.DatasetSplits.")
    if splits.task not in plugins.tasks:
        fail(owner, f"declares task '{splits.task}', which no plugin registers ({', '.join(plugins.tasks.names())}).")
    if splits.task == LANGUAGE_MODELLING:
        return _check_sequences(owner, splits, lambda: load(spec.name, root))
    if splits.num_classes < 2 or len(splits.class_names) != splits.num_classes:
        fail(owner, f"declares {splits.num_classes} classes and {len(splits.class_names)} class names; "
                    "at least 2, one name each.")
    for name in ("train", "eval", "tune"):
        split = getattr(splits, name)
        if split is None:
            if name == "tune":
                continue
            fail(owner, f"has no '{name}' split.")
        raw = getattr(split, "targets", None)
        targets = [] if raw is None else [t.item() if hasattr(t, "item") else t for t in raw]
        if len(targets) == 0 or len(targets) != len(split):
            fail(owner, f"split '{name}' has {len(split)} samples and {len(targets)} targets; it needs a "
                        "`targets` sequence with one label per sample.")
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < splits.num_classes for t in targets):
            fail(owner, f"split '{name}' has labels outside 0..{splits.num_classes - 1} or that are not int.")
        _, label = split[0]
        if int(label) != targets[0]:
            fail(owner, f"split '{name}' item 0 has label {label}, but its targets say {targets[0]}.")
    if splits.input_shape:  # image files: the model's transform decides the shape (use_transform)
        try:
            check_items(splits, owner)
        except DataError as exc:
            raise ConformanceError(str(exc)) from None
    if sorted(set(splits.train.targets)) != list(range(splits.num_classes)):
        fail(owner, "the train split lacks some classes; reference samples are drawn from it for every class.")
    again = load(spec.name, root)
    if list(again.train.targets) != list(splits.train.targets) or list(again.eval.targets) != list(splits.eval.targets):
        fail(owner, "two loads give different splits; split with a fixed seed.")
    return splits


def _check_sequences(owner: str, splits, load_again):
    """A language-modelling dataset: items ``(token ids, the same ids)`` of integer dtype, of ``input_shape``
    once it has one (text files take the model's tokenizer first), the same on a second load."""
    for name in ("train", "eval", "tune"):
        split = getattr(splits, name)
        if split is None and name != "tune":
            fail(owner, f"has no '{name}' split.")
        if split is None or not splits.input_shape:
            continue
        if len(split) == 0:
            fail(owner, f"split '{name}' holds no sequence.")
        tokens, labels = split[0]
        if tokens.is_floating_point() or not torch.equal(tokens, labels):
            fail(owner, f"split '{name}' item 0 is not (token ids, the same token ids) of an integer dtype.")
    if splits.input_shape:
        try:
            check_items(splits, owner)
        except DataError as exc:
            raise ConformanceError(str(exc)) from None
        if not torch.equal(load_again().eval[0][0], splits.eval[0][0]):
            fail(owner, "two loads give different splits; split with a fixed seed.")
    return splits


IMAGENET_CLASSES = ("n01440764", "n01443537", "n01484850")
"""Three WordNet ids: the classes of `write_jpeg_folder`'s folder (``--dataset imagenet`` takes it)."""


def write_jpeg_folder(root: str | Path, *, classes: tuple[str, ...] = IMAGENET_CLASSES,
                      per_split: tuple[int, int] = (10, 50), size: tuple[int, int] = (500, 375),
                      seed: int = 0) -> Path:
    """``root/{train,val}/<class>/<class>_<i>.JPEG``: ``per_split`` (train, val) images per class of ``size``
    (width, height; ImageNet's typical 500x375 by default), smooth random colours (upscaled 100x75 noise,
    blurred), quality 90, the same files for the same arguments. Returns ``root``."""
    import numpy as np
    from PIL import Image, ImageFilter

    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_split):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 255, (75, 100, 3), dtype=np.uint8)
                image = Image.fromarray(pixels).resize(size, Image.BILINEAR).filter(ImageFilter.GaussianBlur(2))
                image.save(folder / f"{name}_{index}.JPEG", quality=90)
    return root

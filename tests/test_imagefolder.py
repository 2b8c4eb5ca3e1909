"""Image-folder datasets (ImageNet layout) made of real JPEG files the tests write."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import sys

import pytest
import torch
from torch.utils.data import Subset
from typer.testing import CliRunner

from helpers import write_image_folder
from pxp_bench.benchmark import evaluate, prepare, score
from pxp_bench.cli import app
from pxp_bench.data.imagefolder import load_image_folders
from pxp_bench.data.loading import decoded_once, loader
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.data.protocol import draw_sets
from pxp_bench.errors import DataError
from pxp_bench.plan import Benchmark


def test_classes_are_the_sorted_folders_and_targets_follow(imagenet_like):
    splits = load_image_folders("imagenet", imagenet_like)
    assert splits.class_names == ["n01440764", "n01443537", "n01484850"] and splits.num_classes == 3
    assert len(splits.train) == 18 and len(splits.eval) == 9
    assert sorted(set(splits.train.targets)) == [0, 1, 2]


def test_transform_sets_the_input_shape(imagenet_like):
    from torchvision.models import ResNet18_Weights

    splits = load_image_folders("imagefolder", imagenet_like)
    splits.use_transform(ResNet18_Weights.DEFAULT.transforms(crop_size=24, resize_size=24))
    image, label = splits.eval[4]
    assert splits.input_shape == (3, 24, 24) and image.dtype == torch.float32 and label == 1


def test_reference_tuning_and_eval_sets_are_disjoint_and_deterministic(imagenet_like):
    splits = load_image_folders("imagefolder", imagenet_like)
    first = draw_sets(splits, n_classes=2, ref_per_class=3, tune_per_class=2, seed=3)
    assert first == draw_sets(splits, n_classes=2, ref_per_class=3, tune_per_class=2, seed=3)
    assert first.tuning_split == "train" and not set(first.reference) & set(first.tuning)
    assert {splits.eval.targets[i] for i in first.evaluation} == set(first.classes)


def _copy(source, target):
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize("breakage, message", [
    ("missing-root", "does not exist"),
    ("no-val", "expects .*val/ with one folder per class"),
    ("flat-val", r"val holds 9 image files directly \(such as n01440764-img0\.jpg\); .*ILSVRC-2012 .*valprep"),
    ("empty-class", "Every class folder needs at least one image"),
    ("odd-names", "WordNet ids"),
    ("class-mismatch", "different class folders"),
])
def test_broken_layouts_are_named(imagenet_like, tmp_path, breakage, message):
    root = _copy(imagenet_like, tmp_path / "data")
    if breakage == "missing-root":
        root = tmp_path / "nowhere"
    elif breakage == "no-val":
        shutil.rmtree(root / "val")
    elif breakage == "flat-val":
        for image in (root / "val").rglob("*.jpg"):
            image.rename(root / "val" / f"{image.parent.name}-{image.name}")
        for folder in [p for p in (root / "val").iterdir() if p.is_dir()]:
            folder.rmdir()
    elif breakage == "empty-class":
        for image in (root / "train" / "n01443537").iterdir():
            image.unlink()
    elif breakage == "odd-names":
        for split in ("train", "val"):
            (root / split / "n01440764").rename(root / split / "goldfish")
    elif breakage == "class-mismatch":
        (root / "val" / "n01484850").rename(root / "val" / "n09999999")
    with pytest.raises(DataError, match=message):
        load_image_folders("imagenet", root)


def test_an_unreadable_image_is_named_when_loaded(tmp_path):
    root = write_image_folder(tmp_path / "data", ["a", "b"], per_split=(2, 2))
    broken = root / "val" / "b" / "img1.jpg"
    broken.write_bytes(b"not a jpeg")
    splits = load_image_folders("imagefolder", root)
    with pytest.raises(DataError, match="cannot read image .*img1.jpg: not an image format PIL can decode"):
        splits.eval[3]


def _flatten(split):
    """Move a split's images out of their class folders, as ImageNet's validation images come."""
    for image in sorted(split.rglob("*.jpg")):
        image.rename(split / f"{image.parent.name}-{image.name}")
    for folder in [p for p in split.iterdir() if p.is_dir()]:
        folder.rmdir()


def _run(root, *options: str) -> str:
    """The whole output of a small random-weight resnet18 run on the image folder at ``root``."""
    result = CliRunner().invoke(app, ["run", "--model", "resnet18", "--weights", "none", "--dataset", "imagefolder",
                                      "--data", str(root), "--image-size", "32", "--rates", "0,0.5",
                                      "--batch-size", "2", "--out", str(root / "out"), *options])
    assert result.exit_code == 2, result.output
    return result.output


def _error_line(output: str) -> str:
    """The error: one line, after at most the progress bars, without a traceback."""
    lines = [line for line in output.strip().splitlines() if not line.startswith(("scoring ", "evaluating "))]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in output, output
    return lines[0]


def test_a_flat_val_folder_is_named_for_any_image_folder(imagenet_like, tmp_path):
    root = _copy(imagenet_like, tmp_path / "data")
    _flatten(root / "val")
    line = _error_line(_run(root))
    assert line == (f"Error: {root / 'val'} holds 9 image files directly (such as n01440764-img0.jpg); images "
                    f"must sit in class folders. Move them into one folder per class "
                    f"({root / 'val'}/<class>/n01440764-img0.jpg).")


@pytest.mark.parametrize("dataset", ["imagefolder", "imagenet"])
def test_loose_images_beside_class_folders_are_named(imagenet_like, tmp_path, dataset):
    root = _copy(imagenet_like, tmp_path / "data")
    (root / "train" / "n01440764" / "img0.jpg").rename(root / "train" / "stray.JPEG")
    with pytest.raises(DataError, match=r"train holds 1 image files directly \(such as stray\.JPEG\); images must "
                                        r"sit in class folders\. Move them into one folder per class"):
        load_image_folders(dataset, root)


@pytest.mark.parametrize("split, damage, reason", [
    ("train", lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
     r"image file is truncated \(\d+ bytes not processed\)"),
    ("val", lambda path: path.write_text("not an image"), "not an image format PIL can decode"),
])
def test_a_corrupt_image_is_named_in_one_line_when_a_run_reads_it(tmp_path, split, damage, reason):
    """train/: every image of class b is a reference sample; val/: evaluation reads it in a loader worker."""
    root = write_image_folder(tmp_path / "data", ["a", "b"], per_split=(2, 2))
    broken = root / split / "b" / "img1.jpg"
    damage(broken)
    line = _error_line(_run(root, "--ref-per-class", "2"))
    assert re.fullmatch(rf"Error: cannot read image {re.escape(str(broken))}: {reason}\. Remove or replace the file\.",
                        line), line


def test_sample_sets_are_decoded_once_with_the_tensors_a_loader_gives(imagenet_like, tmp_path, plugins):
    root = _copy(imagenet_like, tmp_path / "data")
    bench = Benchmark(model="resnet18", weights="none", dataset="imagefolder", data_root=str(root), image_size=32,
                      rates=(0.0, 0.5), batch_size=2, method="taylor", ref_per_class=2, latency_repeats=0)
    prepared = prepare(bench, plugins=plugins)
    streamed = decoded_once(Subset(prepared.splits.eval, prepared.sets.evaluation), (3, 32, 32), budget=0)
    assert isinstance(streamed, Subset)  # over the budget: read from disk each time
    kept = prepared.samples("eval")
    assert isinstance(kept, LabelledTensors) and kept is prepared.samples("eval") and len(kept) == len(streamed)
    assert all(torch.equal(kept[i][0], streamed[i][0]) and kept[i][1] == streamed[i][1] for i in range(len(kept)))
    scores = score(prepared).scores
    before = [point.correct for point in evaluate(prepared, scores, reuse=False)]
    shutil.rmtree(root / "val")  # later curves never read the files again
    assert [point.correct for point in evaluate(prepared, scores, reuse=False)] == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers are forked on Linux only")
def test_loader_workers_are_forked_whatever_the_process_default(imagenet_like):
    """A suite's cell starts from a forkserver, which multiprocessing then makes the cell's default: workers
    started that way import torch anew, seconds per loader. The loader names fork, and still streams."""
    before = multiprocessing.get_start_method(allow_none=True)
    multiprocessing.set_start_method("forkserver", force=True)
    try:
        splits = load_image_folders("imagefolder", imagenet_like)
        splits.use_transform(lambda image: torch.zeros(3, 8, 8))
        stream = loader(splits.eval, 4, torch.device("cpu"))
        assert stream.num_workers > 0 and stream.multiprocessing_context.get_start_method() == "fork"
        assert sum(len(labels) for _, labels in stream) == len(splits.eval)
    finally:
        multiprocessing.set_start_method(before, force=True)

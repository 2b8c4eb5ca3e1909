"""Hugging Face text datasets (``--dataset hf:...``, issue 21): a real `datasets.DatasetDict` saved to disk
and a folder of text files, read through the installed `datasets` package; never a download."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from helpers import LM_TEXT, save_random_lm, write_text_folder
from pxp_bench.benchmark import prepare
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.lm.hf_datasets import parse_name
from pxp_bench.plan import Benchmark

datasets = pytest.importorskip("datasets")


def save_dataset(folder, splits: dict[str, int], *, columns: dict[str, str] | None = None):
    """One row per split: ``LM_TEXT`` repeated ``splits[name]`` times, under the column ``text`` (or more)."""
    columns = columns or {"text": ""}
    datasets.DatasetDict({
        name: datasets.Dataset.from_dict({column: [prefix + LM_TEXT * repeats] for column, prefix in columns.items()})
        for name, repeats in splits.items()
    }).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf-datasets")
    return {
        "model": save_random_lm(root / "llama", "llama"),
        "text": write_text_folder(root / "text"),
        "saved": save_dataset(root / "saved", {"train": 12, "validation": 4, "test": 6}),
        "root": root,
    }


def bench(folders, dataset: str, **options) -> Benchmark:
    values = dict(model=f"hf:{folders['model']}", dataset=dataset, weights="none", method="random",
                  rates=(0.0, 0.5), latency_repeats=0, ref_per_class=4, batch_size=8)
    return Benchmark(**{**values, **options})


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def test_names_parse_into_source_config_and_column():
    assert parse_name("hf:Salesforce/wikitext:wikitext-2-raw-v1") == ("Salesforce/wikitext", "wikitext-2-raw-v1",
                                                                     None, False)
    assert parse_name("hf:imdb#review") == ("imdb", None, "review", False)
    assert parse_name("hf:/data/c:d#body") == ("/data/c:d", None, "body", True)  # a path keeps its colons
    with pytest.raises(ConfigError, match="names no dataset"):
        parse_name("hf:")


def test_a_saved_dataset_gives_the_sequences_of_the_same_text_in_files(folders):
    """One row holding a text file's text tokenizes as the file does: the same evaluation sequences."""
    from_files = prepare(bench(folders, "text", data_root=folders["text"]))
    from_hub_layout = prepare(bench(folders, f"hf:{folders['saved']}", tune_per_class=2))
    assert torch.equal(from_hub_layout.splits.eval.inputs, from_files.splits.eval.inputs)
    assert torch.equal(from_hub_layout.splits.train.inputs, from_files.splits.train.inputs)
    assert from_hub_layout.sets.tuning_split == "tune" and len(from_hub_layout.splits.tune) > 0  # validation


def test_run_on_a_saved_dataset_records_its_name_and_tunes_on_validation(folders, tmp_path):
    name = f"hf:{folders['saved']}"
    done = invoke("run", "--model", f"hf:{folders['model']}", "--weights", "none", "--dataset", name,
                  "--method", "random", "--rates", "0,0.5", "--tune-per-class", "2", "--latency-repeats", "0",
                  "--out", tmp_path)
    assert done.exit_code == 0, done.output
    [written] = tmp_path.glob("*.json")
    record = json.loads(written.read_text())
    assert record["dataset"] == name and "perplexity" in record["curve"][0]
    assert record["samples"]["tuning_split"] == "tune" and record["samples"]["tuning"] == 2


def test_without_a_test_split_validation_is_evaluated_and_tuning_comes_from_train(folders):
    saved = save_dataset(folders["root"] / "no-test", {"train": 12, "validation": 6})
    prepared = prepare(bench(folders, f"hf:{saved}", tune_per_class=2))
    assert prepared.splits.tune is None and prepared.sets.tuning_split == "train"
    assert not set(prepared.sets.reference) & set(prepared.sets.tuning)


def test_a_folder_of_text_files_loads_through_the_text_builder(folders):
    files = folders["root"] / "files"
    files.mkdir()
    (files / "train.txt").write_text(LM_TEXT * 12)
    (files / "test.txt").write_text(LM_TEXT * 6)
    prepared = prepare(bench(folders, f"hf:{files}"))
    assert len(prepared.splits.eval) > 0 and prepared.splits.tune is None


def test_the_text_column_is_chosen_by_name_or_uniqueness(folders):
    two = save_dataset(folders["root"] / "two-columns", {"train": 12, "test": 6}, columns={"body": "", "title": "x"})
    first = prepare(bench(folders, f"hf:{two}#body"))
    second = prepare(bench(folders, f"hf:{two}#title"))
    assert not torch.equal(first.splits.eval.inputs[0], second.splits.eval.inputs[0])
    only = save_dataset(folders["root"] / "one-column", {"train": 12, "test": 6}, columns={"body": ""})
    assert len(prepare(bench(folders, f"hf:{only}")).splits.eval) == len(first.splits.eval)


def test_bad_hugging_face_datasets_are_one_line_each(folders, tmp_path):
    root = folders["root"]
    datasets.Dataset.from_dict({"text": [LM_TEXT]}).save_to_disk(str(root / "single"))
    save_dataset(root / "train-only", {"train": 12})
    save_dataset(root / "two", {"train": 12, "test": 6}, columns={"body": "", "title": "x"})
    cases = [
        ("hf:", "names no dataset"),
        (f"hf:{root / 'nowhere'}", "does not exist"),
        (f"hf:{root / 'single'}", "is a single split"),
        (f"hf:{root / 'train-only'}", "it needs train and test"),
        (f"hf:{root / 'two'}", "name one: hf:"),
        (f"hf:{root / 'two'}#missing", "no text column 'missing'"),
        (f"hf:{root / 'empty-folder'}", "cannot load the Hugging Face dataset"),
        (f"hf:{root / 'broken-json'}", "JSON parse error"),  # the generation error's cause, not its wrapper
    ]
    (root / "empty-folder").mkdir()
    (root / "broken-json").mkdir()
    (root / "broken-json" / "train.json").write_text('{"text": "unclosed"')
    (root / "broken-json" / "test.json").write_text('{"text": "fine"}')
    for name, needle in cases:
        done = invoke("run", "--model", f"hf:{folders['model']}", "--weights", "none", "--dataset", name,
                      "--method", "random", "--rates", "0,0.5", "--out", tmp_path)
        assert done.exit_code == 2, (name, done.output)
        assert needle in done.output and "Traceback" not in done.output, (name, done.output)
    assert not list(tmp_path.glob("*.json"))

"""Language-model inputs read strictly: text files in their encoding (--encoding), --seq-len's own range,
Hugging Face Hub names without a network (one line, HF_HUB_OFFLINE named), and hf:/folders refused from their
files (no config.json, no model_type, no tokenizer, an encoder) before any weights are read."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from helpers import LM_TEXT, lm_tokenizer, save_random_lm, write_text_folder
from pxp_bench.benchmark import prepare
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.plan import Benchmark, check_options, plan_benchmark

ACCENTED = LM_TEXT.replace("quick", "quïck").replace("lazy", "lazÿ")
"""Text with characters outside ASCII, one byte each in Latin-1, two in UTF-8."""
COMMON = ["--method", "random", "--rates", "0,0.5", "--latency-repeats", "0", "--ref-per-class", "2"]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-inputs")
    return {"llama": save_random_lm(root / "llama", "llama"), "text": write_text_folder(root / "text")}


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


def one_line_error(done, *needles):
    """The run failed with exit 2 in one line holding every needle, no traceback."""
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert done.exit_code == 2, done.output
    assert len(lines) == 1 and "Traceback" not in done.output, done.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def text_folder(root, text: str, encoding: str):
    root.mkdir()
    for name, repeats in (("train.txt", 12), ("val.txt", 6)):
        (root / name).write_bytes((text * repeats).encode(encoding))
    return root


def test_text_files_are_decoded_strictly_and_other_encodings_need_encoding(lm, tmp_path):
    latin = text_folder(tmp_path / "latin", ACCENTED, "latin-1")
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "train.txt").write_bytes(torch.randint(0, 256, (4000,), generator=torch.Generator().manual_seed(0),
                                                     dtype=torch.uint8).numpy().tobytes())
    (binary / "val.txt").write_text(LM_TEXT * 6)
    nul = text_folder(tmp_path / "nul", LM_TEXT + "\x00", "latin-1")  # decodes in any 8-bit encoding: still binary
    model = ["--model", f"hf:{lm['llama']}", "--weights", "none", "--dataset", "text", "--out", tmp_path / "out"]
    for data, extra, needles in [
        (binary, [], [str(binary / "train.txt"), "utf-8", "--encoding"]),
        (latin, [], [str(latin / "train.txt"), "utf-8", "--encoding"]),
        (nul, ["--encoding", "latin-1"], [str(nul / "train.txt"), "NUL", "binary"]),
        (latin, ["--encoding", "no-such-codec"], ["--encoding 'no-such-codec'"]),
        (latin, ["--encoding", "base64"], ["--encoding 'base64'"]),  # a codec, but not one of text
    ]:
        one_line_error(invoke("run", *model, "--data", data, *extra, *COMMON), *needles)
    done = invoke("run", "--model", "tiny-llama", "--encoding", "latin-1", *COMMON, "--out", tmp_path / "out")
    one_line_error(done, "--encoding", "lm-corpus")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))
    # the same text gives the same sequences from UTF-8 (the default) and from Latin-1 with --encoding
    utf8 = text_folder(tmp_path / "utf8", ACCENTED, "utf-8")
    common = dict(model=f"hf:{lm['llama']}", weights="none", dataset="text", method="random", rates=(0.0, 0.5),
                  latency_repeats=0, ref_per_class=2, image_size=16)
    decoded = prepare(Benchmark(**common, data_root=latin, encoding="latin-1")).splits
    expected = prepare(Benchmark(**common, data_root=utf8)).splits
    assert torch.equal(decoded.train.inputs, expected.train.inputs)
    assert torch.equal(decoded.eval.inputs, expected.eval.inputs)


def test_an_encoding_is_recorded_in_the_run_options(lm, tmp_path):
    latin = text_folder(tmp_path / "latin", ACCENTED, "cp1252")
    done = invoke("run", "--model", f"hf:{lm['llama']}", "--weights", "none", "--dataset", "text", "--data", latin,
                  "--encoding", "cp1252", "--seq-len", "16", *COMMON, "--out", tmp_path / "out")
    assert done.exit_code == 0, done.output
    (written,) = (tmp_path / "out").glob("*.json")
    options = json.loads(written.read_text()).get("options")  # where a record keeps the run's options
    assert options is None or options["encoding"] == "cp1252"


def test_seq_len_is_two_to_the_context_of_the_language_model(lm, tmp_path):
    short = prepare(Benchmark(model=f"hf:{lm['llama']}", weights="none", dataset="text", data_root=lm["text"],
                              method="random", rates=(0.0, 0.5), latency_repeats=0, ref_per_class=2, image_size=8))
    assert short.loaded.input_shape == (8,) and short.splits.eval.inputs.shape[1] == 8
    embedded = prepare(Benchmark(model="tiny-llama", dataset="text", data_root=lm["text"], method="random",
                                 rates=(0.0, 0.5), latency_repeats=0, ref_per_class=2, image_size=32))
    assert embedded.loaded.input_shape == (32,) and embedded.splits.train.inputs.shape[1] == 32
    # a context beyond an image's 4096 pixels: --seq-len takes what the model's config says
    import transformers

    long = tmp_path / "long"
    transformers.LlamaConfig(vocab_size=len(lm_tokenizer()), hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                             num_attention_heads=2, max_position_embeddings=8192).save_pretrained(long)
    lm_tokenizer().save_pretrained(long)
    bench = Benchmark(model=f"hf:{long}", weights="none", dataset="text", data_root=lm["text"], image_size=5000)
    plan = plan_benchmark(bench)
    check_options(bench, plan.dataset, plan.model)
    assert plan.model.load_build()(plan.model.name, weights="none", image_size=5000).input_shape == (5000,)
    text = ["--dataset", "text", "--data", lm["text"], *COMMON, "--out", tmp_path / "out"]
    one_line_error(invoke("run", "--model", f"hf:{lm['llama']}", "--weights", "none", "--seq-len", "1", *text),
                   "--seq-len must be at least 2")
    one_line_error(invoke("run", "--model", "tiny-llama", "--seq-len", "65", *text), "--seq-len 65", "(64 tokens)")
    one_line_error(invoke("run", "--model", f"hf:{long}", "--weights", "none", "--seq-len", "9000", *text),
                   "--seq-len 9000", "(8192 tokens)")
    one_line_error(invoke("run", "--model", "tiny-llama", "--seq-len", "32", *COMMON), "64 tokens", "--seq-len")
    with pytest.raises(ConfigError, match="--image-size must be between 16 and 4096 pixels"):  # images keep theirs
        check_options(Benchmark(model="digits-vgg", image_size=8), *_dataset_and_model("digits-vgg"))


def _dataset_and_model(model: str):
    plan = plan_benchmark(Benchmark(model=model))
    return plan.dataset, plan.model


def test_a_hub_name_not_in_the_cache_with_hf_hub_offline_is_one_line(lm, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    done = invoke("run", "--model", "hf:pxp-bench-tests/no-such-model", "--dataset", "text", "--data", lm["text"],
                  *COMMON, "--out", tmp_path / "out")
    one_line_error(done, "pxp-bench-tests/no-such-model", "not in the local Hugging Face cache", "HF_HUB_OFFLINE")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_hub_name_that_cannot_be_fetched_is_one_line_without_retries(lm, tmp_path, monkeypatch, caplog):
    """Without a network: one request, no retries, a line naming HF_HUB_OFFLINE; with one: the Hub's answer."""
    caplog.set_level(logging.INFO)
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "3")
    done = invoke("run", "--model", "hf:pxp-bench-tests/no-such-model-5c1d", "--dataset", "text", "--data", lm["text"],
                  *COMMON, "--out", tmp_path / "out")
    line = one_line_error(done, "pxp-bench-tests/no-such-model-5c1d")
    assert ("cannot reach the Hugging Face Hub" in line and "HF_HUB_OFFLINE" in line) or \
        "is not a model on the Hugging Face Hub" in line, line
    retries = [record.getMessage() for record in caplog.records if record.name.startswith("huggingface_hub")]
    assert not retries, retries[:1]  # the library's retry log (5 tries, half a minute) never starts


@pytest.mark.e2e
def test_a_cached_hub_model_loads_offline(lm, tmp_path):
    """A Hub name in the cache runs with HF_HUB_OFFLINE=1 (its own process: the libraries read the cache's place
    on import), its weights identified by the cached commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repository = tmp_path / "cache" / "models--pxp-bench-tests--tiny-llama"
    snapshot = repository / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in lm["llama"].iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", "from pxp_bench.cli import main; main()", "run",
                           "--model", "hf:pxp-bench-tests/tiny-llama", "--dataset", "text", "--data", str(lm["text"]),
                           *COMMON, "--seq-len", "16", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (written,) = (tmp_path / "out").glob("*.json")
    assert json.loads(written.read_text())["weights"] == f"hf:pxp-bench-tests/tiny-llama@{commit}"


def test_a_folder_without_a_decoder_lm_is_refused_from_its_files(lm, tmp_path):
    import transformers

    (tmp_path / "empty").mkdir()
    save_random_lm(tmp_path / "no-tokenizer", "llama", tokenizer=False)
    untyped = save_random_lm(tmp_path / "untyped", "llama")
    config = json.loads((untyped / "config.json").read_text())
    del config["model_type"]
    (untyped / "config.json").write_text(json.dumps(config))
    bert = tmp_path / "bert"
    transformers.BertConfig(vocab_size=len(lm_tokenizer()), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=64).save_pretrained(bert)
    lm_tokenizer().save_pretrained(bert)
    (bert / "model.safetensors").write_bytes(b"not weights")  # refused before any weights are read
    text = ["--dataset", "text", "--data", lm["text"], *COMMON, "--out", tmp_path / "out"]
    one_line_error(invoke("run", "--model", f"hf:{tmp_path / 'empty'}", *text), "has no config.json")
    one_line_error(invoke("run", "--model", f"hf:{tmp_path / 'no-tokenizer'}", "--weights", "none", *text),
                   "has no tokenizer files")
    line = one_line_error(invoke("run", "--model", f"hf:{untyped}", *text), str(untyped / "config.json"), "model_type")
    assert len(line) < 300, line
    one_line_error(invoke("run", "--model", f"hf:{bert}", *text), "not a causal language model", "BertConfig")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.json"))

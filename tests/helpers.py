"""Helpers shared by the tests (kept out of conftest.py, which benchmarks/ also has)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

QUICK_RATES = (0.0, 0.3, 0.6)
TIMED = ("latency_ms_batch1", "latency_ms_batch1_iqr", "latency_batch1_passes", "latency_ms_batch",
         "latency_ms_batch_iqr", "latency_batches", "speedup_at_top_pr", "speedup_at_top_pr_spread")
"""Result fields that are measurements of time (or timed until they add up), which differ between equal runs."""


def as_at_a_terminal() -> None:
    """``preexec_fn`` of a command a test interrupts: SIGINT handled as at a terminal. A shell's background
    job (``make test &``, CI) passes SIGINT on ignored, and a Python started with it ignored never sees Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def untimed(record):
    """A curve (list of points) or metrics dict without its time measurements, for equality checks."""
    if isinstance(record, list):
        return [untimed(point) for point in record]
    return {key: value for key, value in record.items() if key not in TIMED}


def state_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def has_hooks(model: torch.nn.Module) -> bool:
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or getattr(m, "_backward_pre_hooks", None)
        for m in model.modules()
    )


def write_image_folder(root, classes, per_split=(6, 3), size=40, seed=0):
    """A real image-folder dataset of JPEG files: ROOT/{train,val}/<class>/*.jpg, colour-coded classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, count in zip(("train", "val"), per_split):
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                pixels[..., index % 3] += np.uint8(120 + 40 * (index // 3))
                Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root


def pip_install_plugin(where: Path, dist: str, source: str, entry_point: str | None = None,
                       version: str = "1.2.3", python: str | None = None) -> str:
    """Build distribution ``dist`` (one module holding ``source``, an entry point in group ``pxp_bench``)
    and install it for real with pip: into the folder ``where``, or with ``python`` into that
    interpreter's environment (``where`` then only holds the sources). Returns the module name."""
    module = dist.replace("-", "_") + "_plugin"
    package = where.parent / f"{dist}-src"
    package.mkdir(parents=True)
    (package / f"{module}.py").write_text(source)
    (package / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"

        [project.entry-points.pxp_bench]
        {entry_point or dist} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
    """))
    pip = [sys.executable, "-m", "pip", *(["--python", python] if python else []), "install", "--quiet",
           "--no-deps", "--no-build-isolation", *([] if python else ["--target", str(where)])]
    subprocess.run([*pip, str(package)], check=True, capture_output=True)
    return module


LEADERBOARD_ENVIRONMENT = {"python": "3.11.7", "pxp_bench": "0.1.0", "torch": "2.14.1", "torchvision": "0.29.1",
                           "device": "cpu (x86_64, 2 threads)"}


def leaderboard_result(method="lrp", seed=0, *, variant="default", keeps=0.5, model="digits-vgg", dataset="digits",
                       components="filters", params=None, classes=(0, 1, 2), weights="packaged:abc", rates=None,
                       total=10.0, created="2026-01-01T00:00:00+00:00", flops=None, reference=30, class_hash=None,
                       outcomes=True, speedup_spread=0.05):
    """A complete `Result` for the leaderboard, on 60 evaluation samples (3 classes of 20): its curve keeps
    every correct prediction up to rate ``keeps``, then falls; seed and method shift the counts a little, so
    seeds differ. With ``outcomes``, the samples correct at a rate are the first ``correct`` of a fixed
    per-(method, seed) order (nested, as pruning more loses samples); without, a record of an older
    pxp-bench. ``flops`` (a fraction) makes it a slimmed run with FLOPs, parameters and speedup at Top-PR."""
    import zlib

    import numpy as np

    from pxp_bench.data.protocol import index_hash
    from pxp_bench.metrics import record_metrics
    from pxp_bench.outcomes import outcomes_record
    from pxp_bench.rates import DEFAULT_RATES
    from pxp_bench.results import Result

    rates, evaluation = rates or DEFAULT_RATES, 60
    jitter = (seed * 7 + zlib.crc32(method.encode())) % 5
    correct = [evaluation if rate <= keeps else max(20, round(evaluation * (1 - 2 * (rate - keeps))) - jitter)
               for rate in rates]
    curve = [{"rate": r, "pruned": int(100 * r), "correct": c, "accuracy": c / evaluation} for r, c in zip(rates, correct)]
    if flops is not None:  # a slimmed run: FLOPs and parameters fall to these fractions, latency by 1.5x
        for point in curve:
            pruned = point["rate"] > 0
            latency = 2.0 if pruned else 3.0
            point.update(parameters=round(1000 * flops / 2) if pruned else 1000, flops=round(1000 * flops) if pruned else 1000,
                         latency_ms_batch=latency, latency_ms_batch_iqr=latency * speedup_spread / 2)
    metrics = record_metrics(rates, correct, evaluation, layers={}, efficiency=curve if flops is not None else None)
    order = np.random.default_rng(zlib.crc32(f"{method}{seed}".encode())).permutation(evaluation)
    bits = [np.isin(np.arange(evaluation), order[:count]) for count in correct]
    record = outcomes_record(bits, np.arange(evaluation) // 20, index_hash(range(evaluation))) if outcomes else None
    return Result(
        method=method, variant=variant, model=model, dataset=dataset, components=components,
        params={"aggregation": "abs"} if params is None else params, seed=seed, classes=list(classes),
        rates=list(rates), curve=curve, metrics=metrics, layers={}, timings={"total": total},
        environment=dict(LEADERBOARD_ENVIRONMENT), weights=weights,
        samples={"class_hash": class_hash or index_hash(classes), "reference": reference, "image_size": None,
                 "amp": None, "evaluation": evaluation, "evaluation_hash": index_hash(range(evaluation))},
        created=created, evaluate="masked" if flops is None else "slim", outcomes=record)


FAST_PARAMS = {"ig": {"n_steps": 2}, "smoothgrad": {"n_samples": 2}, "conductance": {"n_steps": 2},
               "gradient_shap": {"n_samples": 2}}
"""Tests of the contract, not of an attribution's quality: 2 integration steps / noise samples exercise
the same code as the defaults' 20, in a tenth of the time."""


TINY_SUITE = """
description = "two methods on digits-vgg's filters"
seeds = [0, 1]

[run]
rates = "0,0.3,0.6"
n_classes = 3
latency_repeats = 0

[[settings]]
model = "digits-vgg"
components = ["filters"]

[[methods]]
method = "magnitude"

[[methods]]
method = "random"
"""
"""A suite of 4 cheap cells: magnitude and random on digits-vgg filters, seeds 0 and 1, 3 rates, no timing."""


LM_TEXT = ("the quick brown fox jumps over the lazy dog. pack my box with five dozen liquor jugs. "
           "how vexingly quick daft zebras jump! sphinx of black quartz, judge my vow. ")


def lm_tokenizer():
    """A byte-level BPE tokenizer trained here on `LM_TEXT` (no download), as Hugging Face saves one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator([LM_TEXT * 20], trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=["<eos>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<eos>")


def save_random_lm(folder: Path, architecture: str, *, tokenizer: bool = True) -> Path:
    """A random-weight causal LM (llama, qwen2, gpt2, mistral) of 2 layers, 4 query heads (2 key/value
    heads where the architecture has grouped-query attention), saved with ``save_pretrained``."""
    import transformers

    vocab = len(lm_tokenizer())
    shared = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=64)
    configs = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, shared),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, shared),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, shared),
        "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
                 dict(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    }
    config_class, model_class, values = configs[architecture]
    torch.manual_seed(0)
    model_class(config_class(**values)).save_pretrained(folder)
    if tokenizer:
        lm_tokenizer().save_pretrained(folder)
    return folder


def write_text_folder(root: Path, repeats: tuple[int, int] = (12, 6)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text(LM_TEXT * repeats[0])
    (root / "val.txt").write_text(LM_TEXT * repeats[1])
    return root

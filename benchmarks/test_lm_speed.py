"""Language models (issue 21): LRP throughput against a plain forward + backward (target <= 2x), the
embedded LM's default run (target < 2 min) and the peak memory of scoring a 0.5B model (24 GB machine).

``extra_info`` holds the figures the README reports (tokens per second, the ratio, peak RSS). The
Qwen2-0.5B-shaped cases are heavy on a CPU, so they run only under ``make bench``.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import pytest
import torch

from pxp_bench.attribution.lrp import lrp_scores
from pxp_bench.attribution.reference import ReferenceSet, RunContext
from pxp_bench.components import discover_components
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.lm.model import CausalLM
from pxp_bench.tasks.language_modelling import LANGUAGE_MODELLING_TASK

CPU = torch.device("cpu")
QWEN2_0P5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                  num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True)
"""Qwen2-0.5B's shape (24 layers; the throughput case keeps 2), random weights: nothing is downloaded."""


class _Sequences(LabelledTensors):
    def __getitem__(self, index):
        return self.inputs[index], self.inputs[index]


def _reference(tokens: torch.Tensor) -> ReferenceSet:
    return ReferenceSet(_Sequences(tokens, [0] * len(tokens)), [0], len(tokens), CPU, LANGUAGE_MODELLING_TASK)


def _forward_backward_seconds(model, tokens, repeats: int = 3) -> float:
    """The same batch, its target (summed true next-token logits) differentiated to the parameters' graph."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = model(tokens)
        target = LANGUAGE_MODELLING_TASK.target_outputs(logits, tokens).sum()
        torch.autograd.grad(target, [p for p in model.parameters() if p.requires_grad][:1] + [logits])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(benchmark, model, tokens, kind: str, rounds: int) -> None:
    components = discover_components(model, kind, tokens[:1])
    baseline = _forward_backward_seconds(model, tokens)
    benchmark.pedantic(lambda: lrp_scores(model, components, _reference(tokens), RunContext.seeded(0)),
                       rounds=rounds, iterations=1)
    if not benchmark.disabled:
        seconds = benchmark.stats.stats.median
        benchmark.extra_info.update(forward_backward_s=round(baseline, 4), lrp_s=round(seconds, 4),
                                    ratio=round(seconds / baseline, 2),
                                    lrp_tokens_per_s=round(tokens.numel() / seconds),
                                    forward_backward_tokens_per_s=round(tokens.numel() / baseline))


def _qwen2(layers: int) -> CausalLM:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(**QWEN2_0P5B, num_hidden_layers=layers, attn_implementation="eager")
    return CausalLM(Qwen2ForCausalLM(config)).eval()


@pytest.mark.parametrize("kind", ["heads", "neurons"])
def test_lrp_tiny_llama_reference_batch(benchmark, kind):
    from pxp_bench.lm.corpus import corpus_splits
    from pxp_bench.lm.loading import build_embedded_lm

    tokens = corpus_splits(0, length=64).train[:10]  # the default reference set's size: 10 sequences
    _measure(benchmark, build_embedded_lm("tiny-llama").module, tokens, kind, rounds=5)


def test_lrp_qwen2_0p5b_shape_2_layers(benchmark):
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    tokens = torch.randint(0, QWEN2_0P5B["vocab_size"], (2, 128), generator=torch.Generator().manual_seed(0))
    _measure(benchmark, _qwen2(2), tokens, "heads", rounds=3)


MEMORY_SCRIPT = """
import json, resource, sys, time, torch
sys.path.insert(0, {here!r})
from test_lm_speed import _qwen2, _reference, QWEN2_0P5B
from pxp_bench.attribution.lrp import lrp_scores
from pxp_bench.attribution.reference import RunContext
from pxp_bench.components import discover_components
model = _qwen2(24)
tokens = torch.randint(0, QWEN2_0P5B["vocab_size"], (2, 128), generator=torch.Generator().manual_seed(0))
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
components = discover_components(model, "heads", tokens[:1])
start = time.perf_counter()
lrp_scores(model, components, _reference(tokens), RunContext.seeded(0))
print(json.dumps(dict(parameters=sum(p.numel() for p in model.parameters()), seconds=time.perf_counter() - start,
                      rss_after_load_mb=loaded / 1024, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def test_lrp_qwen2_0p5b_peak_memory(benchmark):
    """Scoring the heads of a whole 0.5B model (24 layers, 2 sequences of 128 tokens) in a fresh process:
    its peak resident memory must leave a 24 GB machine room."""
    if benchmark.disabled:
        pytest.skip("heavy on a CPU: runs under `make bench` only")
    from pathlib import Path

    script = MEMORY_SCRIPT.format(here=str(Path(__file__).parent))
    done = benchmark.pedantic(lambda: subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                                     check=True), rounds=1, iterations=1)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    benchmark.extra_info.update({key: round(value, 1) for key, value in figures.items()})
    assert figures["peak_rss_mb"] < 20 * 1024


def test_tiny_llama_default_run(benchmark, tmp_path):
    """`pxp-bench run --model tiny-llama --rates 0:1:0.125` (LRP, its 8 heads one per rate, the curve slimmed,
    latency timed) end to end."""
    command = [sys.executable, "-c", "from pxp_bench.cli import main; main()", "run", "--model", "tiny-llama",
               "--rates", "0:1:0.125", "--out", str(tmp_path)]
    benchmark.pedantic(lambda: subprocess.run(command, capture_output=True, check=True), rounds=1, iterations=1)
    if not benchmark.disabled:
        benchmark.extra_info["peak_rss_children_mb"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)

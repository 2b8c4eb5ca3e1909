"""Language models (issue 21): the task, components, exact masking, slimmed == masked, LRP via lxt, the
Hugging Face loader and its bad inputs, on random-weight models saved here and on the embedded LM."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from helpers import save_random_lm, write_text_folder
from pxp_bench.benchmark import prepare, run_benchmark, score
from pxp_bench.cli import app
from pxp_bench.errors import ComponentError
from pxp_bench.masking import keep_masks, masked
from pxp_bench.outcomes import read_outcomes
from pxp_bench.plan import Benchmark
from pxp_bench.slim.surgery import Slimmer

RATES = (0.0, 0.25, 0.5, 0.75)
ARCHITECTURES = ("llama", "qwen2", "gpt2")


@pytest.fixture(scope="session")
def lm_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("lms")
    folders = {arch: save_random_lm(root / arch, arch) for arch in (*ARCHITECTURES, "mistral")}
    folders["text"] = write_text_folder(root / "text")
    return folders


def bench(folders, arch: str, **options) -> Benchmark:
    values = dict(model=f"hf:{folders[arch]}", dataset="text", data_root=folders["text"], weights="none",
                  rates=RATES, latency_repeats=0, ref_per_class=4, batch_size=8)
    return Benchmark(**{**values, **options})


def invoke(*args):
    return CliRunner().invoke(app, [str(arg) for arg in args])


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_components_of_decoder_lms(lm_folders, arch):
    heads = prepare(bench(lm_folders, arch, method="random", components="heads"))
    assert [g.size for g in heads.components.groups] == [4, 4]
    assert all(g.unit == 8 and g.at_input and g.channel_dim == -1 for g in heads.components.groups)
    neurons = prepare(bench(lm_folders, arch, method="random", components="neurons"))
    width = 128 if arch == "gpt2" else 48  # GPT-2's MLP is 4 x n_embd wide
    assert [g.size for g in neurons.components.groups] == [width, width]


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("kind", ["heads", "neurons"])
def test_slimmed_curve_equals_masked_curve(lm_folders, arch, kind):
    slim = run_benchmark(bench(lm_folders, arch, method="magnitude", components=kind))
    mask = run_benchmark(bench(lm_folders, arch, method="magnitude", components=kind, evaluate="masked"))
    assert slim.evaluate == "slim" and mask.evaluate == "masked"
    assert [p["correct"] for p in slim.curve] == [p["correct"] for p in mask.curve]
    assert [p["perplexity"] for p in slim.curve] == pytest.approx([p["perplexity"] for p in mask.curve], rel=1e-4)
    parameters = [p["parameters"] for p in slim.curve]
    assert parameters == sorted(parameters, reverse=True) and parameters[-1] < parameters[0]


def test_masking_a_head_equals_zeroing_its_output_projection_columns(lm_folders):
    prepared = prepare(bench(lm_folders, "llama", method="random", components="heads"))
    model, components = prepared.model, prepared.components
    tokens = prepared.samples("eval")[0][0][None]
    group = components.groups[0]
    keep = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    keep[group.name][1] = False
    with torch.no_grad(), masked(model, components, keep):
        got = model(tokens)
    projection = model.get_submodule(group.site)
    saved = projection.weight.detach().clone()
    with torch.no_grad():
        projection.weight[:, 8:16] = 0
        expected = model(tokens)
        projection.weight.copy_(saved)
    assert torch.allclose(got, expected, atol=1e-6)


def test_grouped_query_attention_drops_a_key_value_head_only_with_all_its_query_heads(lm_folders):
    prepared = prepare(bench(lm_folders, "llama", method="random", components="heads"))
    model, components = prepared.model, prepared.components
    tokens = prepared.samples("eval")[0][0][None]
    slimmer = Slimmer(model, components, tokens)
    name = components.groups[0].name
    attention = slimmer.model.get_submodule(name)

    def step(pruned: list[int]):
        keep = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
        keep[name][pruned] = False
        remaining = slimmer.advance(keep)
        with torch.no_grad(), masked(model, components, keep):
            expected = model(tokens)
        with torch.no_grad(), masked(slimmer.model, components, remaining):
            assert torch.allclose(slimmer.model(tokens), expected, atol=1e-5)

    step([0])  # groups {0, 1} and {2, 3}: head 0 goes only if every group can lose one: it stays, masked
    assert attention.q_proj.out_features == 32 and attention.k_proj.out_features == 16
    step([0, 1])  # group 0 is empty: its key/value head leaves with its query heads
    assert attention.q_proj.out_features == 16 and attention.k_proj.out_features == 8
    assert attention.num_key_value_groups == 2
    step([0, 1, 2])  # one group left, keeping one query head: the other goes
    assert attention.q_proj.out_features == 8 and attention.num_key_value_groups == 1


def test_head_layout_that_masking_cannot_express_is_refused():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    from pxp_bench.lm.architecture import query_heads

    attention = LlamaAttention(LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2), 0)
    attention.num_key_value_groups = 3  # 2 key/value heads cannot serve 4 query heads in groups of 3
    with pytest.raises(ComponentError, match="head layout"):
        query_heads(attention)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_lrp_through_lxt_scores_heads_and_restores_every_patch(lm_folders, arch, attention):
    import transformers.models.gpt2.modeling_gpt2 as gpt2
    import transformers.models.llama.modeling_llama as llama
    import transformers.models.qwen2.modeling_qwen2 as qwen2

    watched = [(nn.Dropout, "forward"), (nn.LayerNorm, "forward"), (llama.LlamaMLP, "forward"),
               (llama.LlamaRMSNorm, "forward"), (qwen2.Qwen2MLP, "forward"), (gpt2.GPT2MLP, "forward"),
               *((module, name) for module in (llama, qwen2, gpt2)
                 for name in ("eager_attention_forward", "ALL_ATTENTION_FUNCTIONS"))]
    before = [getattr(owner, name) for owner, name in watched]
    prepared = prepare(bench(lm_folders, arch, method="lrp", components="heads", param_texts={"attention": attention}))
    scores = score(prepared).scores
    flat = torch.cat(list(scores.values()))
    assert torch.isfinite(flat).all() and not torch.all(flat == flat[0])
    assert all(getattr(owner, name) is value for (owner, name), value in zip(watched, before))


def test_lrp_relevance_is_conserved_from_the_target_to_the_heads_sites(lm_folders):
    """Under AttnLRP in the Gradient x Input form, with init=logit, the relevance at the last layer's MLP
    input equals the summed target logits minus what the biases and the residual carry; here we check the
    exact part: the relevance seeded is the summed logits of the true next tokens."""
    prepared = prepare(bench(lm_folders, "llama", method="lrp", components="heads",
                             param_texts={"init": "logit", "aggregation": "signed"}))
    scored = score(prepared).scores
    assert all(torch.isfinite(s).all() for s in scored.values())
    tokens = prepared.samples("reference")[0][0][None]
    logits = prepared.model(tokens)
    target = prepared.task.target_outputs(logits, tokens)
    expected = logits[0, torch.arange(tokens.shape[1] - 1), tokens[0, 1:]].sum()
    assert torch.allclose(target[0], expected)


def test_lrp_on_an_architecture_lxt_has_no_rules_for_is_one_line(lm_folders):
    done = invoke("run", "--model", f"hf:{lm_folders['mistral']}", "--weights", "none", "--dataset", "text",
                  "--data", lm_folders["text"], "--method", "lrp", "--rates", "0,0.5", "--out", lm_folders["text"] / "o")
    assert done.exit_code == 2 and "no efficient LRP rules for MistralForCausalLM" in done.output
    assert "Traceback" not in done.output


@pytest.mark.parametrize("method", ["taylor", "ig", "smoothgrad", "magnitude", "random"])
def test_every_built_in_method_scores_lm_neurons(lm_folders, method):
    params = {"n_steps": "2"} if method == "ig" else {"n_samples": "2"} if method == "smoothgrad" else {}
    prepared = prepare(bench(lm_folders, "qwen2", method=method, components="neurons", param_texts=params))
    flat = torch.cat(list(score(prepared).scores.values()))
    assert torch.isfinite(flat).all() and not torch.all(flat == flat[0])


def test_language_model_outcomes_are_counts_whose_mean_is_the_token_accuracy(lm_folders):
    options = bench(lm_folders, "llama", method="random", components="neurons")
    result = run_benchmark(options)
    record = json.loads(json.dumps(result.to_dict()))
    outcomes = read_outcomes(record)
    assert record["outcomes"]["encoding"] == "counts-base64"
    for row, point in zip(outcomes.correct, record["curve"]):
        assert row.mean() == pytest.approx(point["accuracy"])  # sequences of equal length
    sequences = torch.stack([tokens for tokens, _ in prepare(options).samples("eval")])
    with torch.no_grad():
        logits = prepare(options).model(sequences)[:, :-1]
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), sequences[:, 1:].reshape(-1))
    assert record["curve"][0]["perplexity"] == pytest.approx(math.exp(float(nll)), rel=1e-4)
    assert record["metrics"]["ppl_0"] == record["curve"][0]["perplexity"]


def test_the_task_of_model_and_dataset_must_agree(lm_folders):
    done = invoke("run", "--model", "digits-vgg", "--dataset", "text", "--data", lm_folders["text"],
                  "--method", "random", "--rates", "0,0.5")
    assert done.exit_code == 2 and "language modelling" in done.output and "Traceback" not in done.output
    done = invoke("run", "--model", f"hf:{lm_folders['llama']}", "--weights", "none", "--dataset", "digits",
                  "--method", "random", "--rates", "0,0.5")
    assert done.exit_code == 2 and "serves classification" in done.output


def test_bad_language_model_inputs_are_one_line_each(lm_folders, tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16).save_pretrained(tmp_path / "vit")
    save_random_lm(tmp_path / "bare", "llama", tokenizer=False)
    short = tmp_path / "short"
    short.mkdir()
    for name in ("train.txt", "val.txt"):
        (short / name).write_text("too short")
    common = ["--method", "random", "--rates", "0,0.5", "--out", tmp_path / "out"]
    cases = [
        (["--model", f"hf:{tmp_path / 'vit'}", "--dataset", "text", "--data", lm_folders["text"]], "not a causal language model"),
        (["--model", f"hf:{tmp_path / 'bare'}", "--weights", "none", "--dataset", "text", "--data", lm_folders["text"]],
         "tokenizer"),
        (["--model", f"hf:{lm_folders['llama']}", "--weights", "none", "--dataset", "text", "--data", short,
          "--seq-len", "64"], "fewer than one sequence of 64"),
        (["--model", f"hf:{lm_folders['llama']}", "--weights", "none", "--dataset", "text", "--data", lm_folders["text"],
          "--seq-len", "65"], "exceeds the context"),
        (["--model", f"hf:{lm_folders['llama']}", "--weights", "none", "--dataset", "text", "--data", lm_folders["text"],
          "--ref-per-class", "1000"], "fewer than --ref-per-class 1000"),
        (["--model", f"hf:{lm_folders['llama']}", "--weights", "none", "--dataset", "text", "--data", lm_folders["text"],
          "--classes", "3"], "--classes does not apply"),
        (["--model", f"hf:{tmp_path / 'nowhere'}", "--dataset", "text", "--data", lm_folders["text"]], "cannot load the config"),
    ]
    for args, needle in cases:
        done = invoke("run", *args, *common)
        assert done.exit_code == 2, (args, done.output)
        assert needle in done.output and "Traceback" not in done.output, done.output
    assert not list((tmp_path / "out").glob("*.json"))  # nothing partial written


def test_language_modelling_draws_reference_sequences_disjoint_from_tuning(lm_folders):
    prepared = prepare(bench(lm_folders, "llama", method="random", tune_per_class=3, seed=5))
    sets = prepared.sets
    assert sets.classes == [0] and len(sets.reference) == 4 and len(sets.tuning) == 3
    assert sets.tuning_split == "train" and not set(sets.reference) & set(sets.tuning)
    assert sets.evaluation == list(range(len(prepared.splits.eval)))
    again = prepare(bench(lm_folders, "llama", method="random", tune_per_class=3, seed=5)).sets
    assert again == sets
    tokens, labels = prepared.samples("reference")[0]
    assert torch.equal(tokens, labels)


@pytest.fixture(scope="module")
def copy_circuit():
    """tiny-llama on the corpus' evaluation split: copy accuracy (next bytes predictable only by induction)
    and the other positions' accuracy, unpruned and with each head pruned alone."""
    from pxp_bench.components import discover_components
    from pxp_bench.lm.corpus import copy_positions, corpus_splits
    from pxp_bench.lm.loading import build_embedded_lm

    model = build_embedded_lm("tiny-llama").module
    sequences = corpus_splits(0, length=64).eval
    components = discover_components(model, "heads", sequences[:1])
    copied = copy_positions(sequences)[:, :-1]

    def accuracies(keep):
        with torch.no_grad(), masked(model, components, keep):
            hits = model(sequences)[:, :-1].argmax(dim=-1) == sequences[:, 1:]
        return hits[copied].float().mean().item(), hits[~copied].float().mean().item()

    full = {g.name: torch.ones(g.size, dtype=torch.bool) for g in components.groups}
    alone = []
    for flat in range(components.total):
        keep = keep_masks(components, torch.tensor([flat]), 1)
        alone.append(accuracies(keep))
    return accuracies(full), alone


def test_pruning_the_induction_head_breaks_copying_and_little_else(copy_circuit):
    (copy, other), alone = copy_circuit
    assert copy > 0.95  # the trained model copies
    worst = min(range(len(alone)), key=lambda head: alone[head][0])
    assert alone[worst][0] < 0.2 and alone[worst][1] > other - 0.05  # copying gone, the rest intact


def test_lrp_ranks_the_copy_circuit_most_relevant(copy_circuit):
    """The heads whose pruning alone costs over a third of copy accuracy (the induction head and the two
    heads feeding it; every other head costs under a quarter) are exactly LRP's most relevant ones."""
    (copy, _), alone = copy_circuit
    circuit = {head for head, (copied, _) in enumerate(alone) if copied < copy * 2 / 3}
    assert all(copied > copy * 3 / 4 for head, (copied, _) in enumerate(alone) if head not in circuit)
    prepared = prepare(Benchmark(model="tiny-llama", method="lrp", components="heads", rates=(0.0, 0.5)))
    scores = torch.cat([score(prepared).scores[g.name] for g in prepared.components.groups])
    assert 1 <= len(circuit) < len(scores)
    assert set(torch.argsort(scores, descending=True)[:len(circuit)].tolist()) == circuit


def test_runs_on_the_corpus_record_copy_accuracy_per_rate(copy_circuit, tmp_path):
    """Scores that prune the induction head first: the record's copy accuracy at each rate is the one
    computed here by masking (unpruned, then that head alone), and the corpus' probe is named."""
    from pxp_bench.scores import encode_scores

    (copy, _), alone = copy_circuit
    induction = min(range(len(alone)), key=lambda head: alone[head][0])
    prepared = prepare(Benchmark(model="tiny-llama", method="random", components="heads", rates=(0.0, 0.125)))
    flat = torch.ones(prepared.components.total)
    flat[induction] = 0.0
    scores = dict(zip([g.name for g in prepared.components.groups], flat.split([g.size for g in prepared.components.groups])))
    path = tmp_path / "induction-first.safetensors"
    path.write_bytes(encode_scores(prepared.components, scores, {
        "model": "tiny-llama", "weights": prepared.loaded.weights, "classes": prepared.sets.classes,
        "components": "heads", "method": "handmade", "variant": "induction-first", "params": {}}))
    record = run_benchmark(Benchmark(model="tiny-llama", components="heads", scores_file=path, rates=(0.0, 0.125),
                                     latency_repeats=0)).to_dict()
    assert record["samples"]["probe"] == "copy" and record["samples"]["probe_predictions"] > 0
    measured = [point["copy_accuracy"] for point in record["curve"]]
    assert measured == pytest.approx([copy, alone[induction][0]], abs=1e-6)
    assert measured[1] < 0.2 and record["metrics"]["copy_apr"] == pytest.approx(sum(measured) / 2)
    assert record["metrics"]["copy_0"] == measured[0]
    probe = read_outcomes(json.loads(json.dumps(record))).probe  # per-sequence counts, for the intervals
    assert probe.name == "copy" and int(probe.units.sum()) == record["samples"]["probe_predictions"]
    assert [row.sum() / probe.units.sum() for row in probe.correct] == pytest.approx(measured, abs=1e-12)


def test_zoo_train_trains_the_embedded_lm_in_steps(tmp_path):
    done = invoke("zoo", "train", "tiny-llama", "--out", tmp_path, "--steps", "2")
    assert done.exit_code == 0, done.output
    manifest = json.loads((tmp_path / "tiny-llama.json").read_text())
    assert manifest["steps"] == 2 and "--steps 2" in manifest["command"]
    run = invoke("run", "--model", "tiny-llama", "--weights", tmp_path / "tiny-llama.safetensors", "--method", "random",
                 "--rates", "0,0.5", "--latency-repeats", "0", "--out", tmp_path / "out")
    assert run.exit_code == 0, run.output
    wrong = invoke("zoo", "train", "tiny-llama", "--out", tmp_path / "x", "--epochs", "2")
    assert wrong.exit_code == 2 and "pass --steps" in wrong.output

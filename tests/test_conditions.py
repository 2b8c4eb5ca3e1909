"""Beyond one-shot zero removal (issue 31): mean removal, recovery, the iterative schedule and the per-layer
scope, each on real digits models, and the records, suites and studies that name them."""

from __future__ import annotations

import json
import warnings
from dataclasses import replace

import pytest
import torch
from typer.testing import CliRunner

from pxp_bench.benchmark import evaluate, evaluate_condition, run_benchmark, score
from pxp_bench.cli import app
from pxp_bench.conditions import PAPER, Condition, condition_of, condition_of_record
from pxp_bench.data.loading import loader
from pxp_bench.evaluate import prune_curve
from pxp_bench.masking import keep_masks, masked, rank_components
from pxp_bench.optimize.config import StudyConfig, study_name
from pxp_bench.plan import Benchmark
from pxp_bench.prepare import example_input, prepare
from pxp_bench.recovery import RECOVERY_BATCH, recovery_indices
from pxp_bench.schedule import pruning_order
from pxp_bench.slim.curve import slim_curve

def _prepared(model="digits-vgg", components=None, method="lrp", rates=(0, 0.3, 0.6), **options):
    return prepare(Benchmark(model=model, components=components, method=method, rates=rates, ref_per_class=3,
                             latency_repeats=0, **options))


# --- mean removal


def _independent_means(model, components, batches):
    """Each site channel's mean, from hooks of this test's own (not `pxp_bench.removal`'s)."""
    modules, outputs = dict(model.named_modules()), {}
    hooks = []
    for group in components.groups:
        def keep(_, args, output=None, group=group):
            tensor = args[0] if group.at_input else output
            outputs.setdefault(group.name, []).append(tensor.detach().movedim(group.channel_dim, -1)
                                                      .reshape(-1, tensor.shape[group.channel_dim]))
        module = modules[group.site]
        hooks.append(module.register_forward_pre_hook(keep) if group.at_input
                     else module.register_forward_hook(lambda m, a, o, keep=keep: keep(m, a, o)))
    with torch.no_grad():
        for inputs, _ in batches:
            model(inputs)
    for hook in hooks:
        hook.remove()
    return {name: torch.cat(chunks).mean(dim=0) for name, chunks in outputs.items()}


@pytest.mark.parametrize("components", ["filters", "neurons"])
def test_mean_removal_replaces_a_pruned_component_by_its_mean(components):
    prepared = _prepared(components=components, removal="mean")
    model, parts = prepared.model, prepared.components
    batches = list(loader(prepared.samples("reference"), 16, prepared.device))
    means = _independent_means(model, parts, batches)
    assert prepared.fills.keys() == means.keys()
    for name in means:
        torch.testing.assert_close(prepared.fills[name], means[name], rtol=1e-5, atol=1e-6)
    order = torch.randperm(parts.total, generator=torch.Generator().manual_seed(0))  # any set: some alive
    masks = keep_masks(parts, order, parts.total // 3)
    inputs = batches[0][0]
    modules, hooks = dict(model.named_modules()), []
    for group in parts.groups:  # the independent hook: pruned channels set to their means, by index
        pruned = (~masks[group.name]).nonzero().flatten()

        def replace_output(_, __, output, pruned=pruned, mean=means[group.name]):
            output = output.clone()
            output[:, pruned] = mean[pruned].view(-1, *([1] * (output.dim() - 2)))
            return output

        hooks.append(modules[group.site].register_forward_hook(replace_output))
    with torch.no_grad():
        expected = model(inputs)
    for hook in hooks:
        hook.remove()
    with torch.no_grad(), masked(model, parts, masks, prepared.fills):
        got = model(inputs)
    torch.testing.assert_close(got, expected)
    with torch.no_grad(), masked(model, parts, masks):
        zeroed = model(inputs)
    assert not torch.allclose(zeroed, expected)  # the fills made the difference


@pytest.mark.parametrize("model, components, rates", [("digits-vgg", "filters", (0, 0.3, 0.6, 0.9)),
                                                      ("digits-vgg", "neurons", (0, 0.5, 0.9)),
                                                      ("digits-vit", "heads", (0, 0.25, 0.5, 0.75))])
def test_slimmed_equals_masked_under_mean_removal(model, components, rates):
    prepared = _prepared(model, components, "magnitude", rates, removal="mean")
    order = rank_components(prepared.components, score(prepared).scores)
    data = loader(prepared.samples("eval"), 128, prepared.device)
    common = dict(fills=prepared.fills, task=prepared.task)
    masked_curve = prune_curve(prepared.model, prepared.components, order, rates, data, prepared.sets.classes,
                               prepared.device, **common)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        slim = slim_curve(prepared.model, prepared.components, example_input(prepared), latency_repeats=0,
                          fills=prepared.fills)
        slimmed = prune_curve(prepared.model, prepared.components, order, rates, data, prepared.sets.classes,
                              prepared.device, slim=slim, **common)
    assert not [str(w.message) for w in warned if "slim" in str(w.message)]  # no fallback to masking
    assert [p.correct for p in slimmed] == [p.correct for p in masked_curve]
    assert all(p.efficiency is not None for p in slimmed)
    assert slimmed[-1].efficiency["parameters"] < slimmed[0].efficiency["parameters"]  # something was folded


def test_a_padded_conv_keeps_its_input_channels_masked_under_mean_removal():
    """A channel read by a padded conv cannot leave (its constant is seen only inside the image); one read by
    the classifier's Linear can, its mean folded into the Linear's bias."""
    prepared = _prepared("digits-vgg", "filters", "magnitude", (0, 0.9), removal="mean")
    slim = slim_curve(prepared.model, prepared.components, example_input(prepared), latency_repeats=0,
                      fills=prepared.fills)
    keep = keep_masks(prepared.components, torch.arange(prepared.components.total), prepared.components.total // 2)
    slim.at(keep)
    sizes = {group.name: group.size for group in prepared.components.groups}
    present = {name: len(indices) for name, indices in slim.slimmer.present.items()}
    last = prepared.components.groups[-1].name
    pruned_early = [g.name for g in prepared.components.groups if not bool(keep[g.name].all()) and g.name != last]
    assert pruned_early and all(present[name] == sizes[name] for name in pruned_early)


# --- recovery


def test_bn_recalibration_recovers_random_pruning_above_its_one_shot_curve():
    result = run_benchmark(Benchmark(model="digits-vgg", method="random", rates=(0, 0.5), recover="bn",
                                     latency_repeats=0))
    oneshot = result.recovery["oneshot"]["curve"]
    assert result.curve[1]["accuracy"] > oneshot[1]["accuracy"] + 0.05
    assert result.recovery["kind"] == "bn" and result.recovery["samples"] >= RECOVERY_BATCH
    assert result.timings["recover"] > 0
    assert result.options["recover"] == "bn"
    assert condition_of_record(result.to_dict()).label == "BN recalibration"


def test_finetuning_keeps_the_pruned_components_removed_and_records_both_curves():
    prepared = _prepared("digits-vgg", "filters", "magnitude", (0, 0.5), recover="finetune", recover_steps=3)
    scores = score(prepared).scores
    curve = evaluate_condition(prepared, scores)
    assert curve.oneshot is not None and [p.pruned for p in curve.oneshot] == [p.pruned for p in curve.points]
    assert curve.recovery_seconds > 0
    assert prepared.model.training is False
    result = run_benchmark(prepared.bench)
    assert result.recovery["steps"] == 3 and len(result.recovery["oneshot"]["curve"]) == 2


def test_recovery_samples_are_disjoint_from_reference_and_tuning(digits):
    prepared = _prepared(tune_per_class=5, recover="bn")
    drawn = recovery_indices(digits.train.targets, prepared.sets, 0)
    assert not set(drawn) & set(prepared.sets.reference)
    assert prepared.sets.tuning_split == "tune"  # digits tunes on its own split, so evaluation and tuning differ
    assert all(digits.train.targets[i] in prepared.sets.classes for i in drawn)
    assert drawn == recovery_indices(digits.train.targets, prepared.sets, 0)  # seeded
    assert drawn != recovery_indices(digits.train.targets, prepared.sets, 1)


# --- schedule and scope


def test_an_iterative_schedule_on_a_one_rate_grid_is_the_one_shot_result():
    oneshot = run_benchmark(Benchmark(model="digits-vgg", method="lrp", rates=(0, 0.3), latency_repeats=0))
    iterative = run_benchmark(Benchmark(model="digits-vgg", method="lrp", rates=(0, 0.3), latency_repeats=0,
                                        schedule="iterative"))
    assert iterative.curve == oneshot.curve and iterative.outcomes == oneshot.outcomes


def test_an_iterative_schedule_rescores_the_pruned_model_and_keeps_the_sets_nested():
    prepared = _prepared(schedule="iterative", rates=(0, 0.2, 0.4, 0.6))
    seen = []

    def rescore(masks):
        seen.append({name: mask.clone() for name, mask in masks.items()})
        with masked(prepared.model, prepared.components, masks):
            return score(prepared).scores

    pruning = pruning_order(prepared.components, prepared.rates, score(prepared).scores, scope="global",
                            rescore=rescore)
    assert len(seen) == 2 and len(pruning.rescore_seconds) == 4  # rates 0.4 and 0.6 are scored again
    assert [int((~m).sum()) for m in seen[0].values()] != [0] * len(seen[0])
    assert pruning.counts == tuple(int(rate * prepared.components.total + 1e-9) for rate in prepared.rates)
    oneshot = rank_components(prepared.components, score(prepared).scores)
    assert set(pruning.order[:pruning.counts[1]].tolist()) == set(oneshot[:pruning.counts[1]].tolist())
    assert set(pruning.order[:pruning.counts[3]].tolist()) != set(oneshot[:pruning.counts[3]].tolist())
    result = run_benchmark(prepared.bench)
    assert len(result.rescoring["seconds_per_rate"]) == 4 and result.timings["rescore"] > 0


def test_the_layer_scope_prunes_the_same_fraction_of_every_layer():
    result = run_benchmark(Benchmark(model="digits-vgg", method="lrp", rates=(0, 0.25, 0.5, 0.75), scope="layer",
                                     latency_repeats=0))
    prepared = _prepared(rates=(0, 0.25, 0.5, 0.75))
    sizes = {group.name: group.size for group in prepared.components.groups}
    for name, fractions in result.layers.items():
        assert fractions == [int(rate * sizes[name]) / sizes[name] for rate in result.rates]


def test_the_paper_protocol_is_every_default_and_every_record_names_its_condition():
    assert condition_of(Benchmark()) == PAPER and PAPER.label == "paper protocol"
    result = run_benchmark(Benchmark(model="digits-vgg", method="magnitude", rates=(0, 0.5), latency_repeats=0))
    assert {key: result.options[key] for key in ("removal", "recover", "schedule", "scope")} == {
        "removal": "zero", "recover": "none", "schedule": "oneshot", "scope": "global"}
    assert result.recovery is None and result.rescoring is None
    assert condition_of_record({"options": {}}) == PAPER  # records made before the choices existed
    assert Condition(recover="finetune", recover_steps=100, scope="layer").label == "fine-tuning 100 steps, layer-wise"


def test_a_study_under_another_condition_is_another_study():
    bench = Benchmark(model="digits-vgg", method="lrp")
    paper = study_name(StudyConfig(bench, (0,)), "filters", "lrp")
    recovered = study_name(StudyConfig(replace(bench, recover="bn"), (0,)), "filters", "lrp")
    assert paper == "digits-vgg_filters_lrp_seeds0" and recovered == "digits-vgg_filters_lrp_seeds0_BN-recalibration"


def test_tuning_curves_follow_the_condition():
    prepared = _prepared(method="magnitude", recover="bn", tune_per_class=3, rates=(0, 0.5))
    scores = score(prepared).scores
    tuned = evaluate(prepared, scores, "tune")
    paper = evaluate(_prepared(method="magnitude", tune_per_class=3, rates=(0, 0.5)), scores, "tune")
    assert [p.pruned for p in tuned] == [p.pruned for p in paper] and tuned[1].correct != paper[1].correct


# --- command line


def test_run_takes_the_four_choices_from_the_command_line(tmp_path):
    done = CliRunner().invoke(app, ["run", "--method", "magnitude", "--rates", "0,0.5", "--latency-repeats", "0",
                                    "--removal", "mean", "--scope", "layer", "--recover", "bn", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert condition_of_record(record) == Condition(removal="mean", recover="bn", scope="layer")
    assert record["recovery"]["oneshot"]["metrics"]["a_pr"] <= 1


# --- bad input: one line each, exit 2, before any work


def _refused(*args: str, needles: tuple[str, ...], out=None) -> None:
    done = CliRunner().invoke(app, [str(arg) for arg in args])
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and isinstance(done.exception, (SystemExit, type(None)))
    text = " ".join(done.output.split())
    for needle in needles:
        assert needle in text, (needle, text)
    if out is not None:
        assert not list(out.glob("*.json"))


QUICK = ["--method", "magnitude", "--rates", "0,0.5", "--latency-repeats", "0"]


@pytest.mark.parametrize("args, needles", [
    (["--removal", "median"], ("--removal must be one of zero, mean",)),
    (["--recover", "adabn"], ("--recover must be one of none, bn, finetune",)),
    (["--schedule", "gradual"], ("--schedule must be one of oneshot, iterative",)),
    (["--scope", "block"], ("--scope must be one of global, layer",)),
    (["--recover", "finetune", "--recover-steps", "0"], ("--recover-steps must be a whole number of steps from 1",)),
    (["--recover", "finetune", "--recover-steps", "-5"], ("--recover-steps must be", "got -5")),
    (["--recover", "finetune", "--recover-steps", "1000000000"], ("--recover-steps must be", "100,000")),
    (["--recover-steps", "10"], ("applies to --recover finetune only",)),
    (["--recover", "bn", "--recover-steps", "10"], ("applies to --recover finetune only", "--recover bn")),
    (["--model", "digits-vit", "--components", "heads", "--rates", "0,0.5", "--recover", "bn"],
     ("--recover bn", "no BatchNorm", "--recover finetune")),
    (["--classes", "2", "--ref-per-class", "100", "--recover", "finetune"],
     ("needs at least 64 training samples", "Lower --ref-per-class")),
    (["--model", "tiny-llama", "--recover", "finetune"], ("image classifiers", "Drop --recover")),
    (["--model", "digits-vit", "--components", "heads", "--rates", "0:1:0.125", "--scope", "layer"],
     ("--scope layer", "0.125, prunes none of any layer", "at least 0.25")),
])
def test_run_refuses_a_condition_it_cannot_honour(tmp_path, args, needles):
    _refused("run", *QUICK, *args, "--out", tmp_path, needles=needles, out=tmp_path)


def test_saved_scores_cannot_be_rescored_by_an_iterative_schedule(tmp_path):
    scores = tmp_path / "s.scores.safetensors"
    scores.write_bytes(b"")
    _refused("run", *QUICK, "--scores", scores, "--schedule", "iterative", "--out", tmp_path,
             needles=("--schedule iterative", "saved --scores cannot be rescored"), out=tmp_path)


@pytest.mark.parametrize("args", [["--recover", "bn"], ["--removal", "mean"]])
def test_export_refuses_what_it_cannot_carry(tmp_path, args):
    _refused("export", *QUICK, *args, "--to", tmp_path / "m.pt2", "--out", tmp_path,
             needles=("export writes the one-shot, zero-removal slimmed model",), out=tmp_path)


def test_optimize_refuses_a_bad_condition_before_opening_a_study(tmp_path):
    _refused("optimize", "--method", "lrp", "--trials", "1", "--recover-steps", "5", "--out", tmp_path,
             needles=("applies to --recover finetune only",))
    assert not list(tmp_path.glob("*"))


@pytest.mark.parametrize("table, needles", [
    ('removal = "median"', ("[[conditions]] #1", "--removal must be one of")),
    ('recover = "bn"\nrecover_steps = 5', ("[[conditions]] #1", "applies to --recover finetune only")),
    ('shedule = "iterative"', ("[[conditions]] #1", "unknown key(s) shedule")),
    ('models = "digits-vgg"', ("models must be a list of model names",)),
])
def test_a_suite_refuses_a_bad_condition(tmp_path, table, needles):
    suite = tmp_path / "bad.toml"
    suite.write_text('description = "bad"\nseeds = [0]\n[[settings]]\nmodel = "digits-vgg"\n'
                     f'[[conditions]]\n{table}\n[[methods]]\nmethod = "magnitude"\n')
    _refused("suite", "run", suite, "--out", tmp_path / "out", needles=needles)


def test_a_suite_runs_each_setting_under_its_conditions(plugins, tmp_path):
    from pxp_bench.suites.definition import load_suite

    suite = tmp_path / "beyond.toml"
    suite.write_text('description = "d"\nseeds = [0]\n[[settings]]\nmodel = "digits-vgg"\ncomponents = "filters"\n'
                     '[[settings]]\nmodel = "digits-vit"\ncomponents = "heads"\n[[conditions]]\n'
                     '[[conditions]]\nrecover = "bn"\nmodels = ["digits-vgg"]\n'
                     '[[conditions]]\nrecover = "finetune"\nrecover_steps = 7\n[[methods]]\nmethod = "magnitude"\n')
    loaded = load_suite(str(suite), plugins)
    labels = sorted(cell.label for cell in loaded.cells)
    assert labels == ["digits-vgg/filters [BN recalibration] magnitude:default seed 0",
                      "digits-vgg/filters [fine-tuning 7 steps] magnitude:default seed 0",
                      "digits-vgg/filters magnitude:default seed 0",
                      "digits-vit/heads [fine-tuning 7 steps] magnitude:default seed 0",
                      "digits-vit/heads magnitude:default seed 0"]
    paper = next(cell for cell in loaded.cells if cell.label == "digits-vgg/filters magnitude:default seed 0")
    assert "recover" not in paper.config  # the paper's cells keep the keys they had before conditions existed
    assert condition_of(next(cell for cell in loaded.cells if "7 steps" in cell.label).benchmark()).recover_steps == 7


def test_a_recovered_record_whose_recovery_samples_were_edited_is_kept_out(tmp_path):
    from pxp_bench.records import collect_results
    from pxp_bench.results import write_result

    result = run_benchmark(Benchmark(model="digits-vgg", method="magnitude", rates=(0, 0.5), recover="bn",
                                     latency_repeats=0, n_classes=3))
    path = write_result(result, tmp_path / "good")
    record = json.loads(path.read_text())
    record["recovery"]["samples_hash"] = "0" * 16
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / path.name).write_text(json.dumps(record))
    assert not collect_results([tmp_path / "good"]).kept_out
    kept_out = collect_results([tmp_path / "bad"]).kept_out
    assert len(kept_out) == 1 and "recovery.samples_hash" in kept_out[0].reason


def test_the_digits_beyond_suite_runs_bn_only_where_there_is_batchnorm(plugins):
    from pxp_bench.suites.definition import load_suite

    labels = [cell.label for cell in load_suite("digits-beyond", plugins).cells]
    assert any("digits-vgg/filters [BN recalibration]" in label for label in labels)
    assert not any("digits-vit/heads [BN recalibration]" in label for label in labels)
    assert sum("[fine-tuning 50 steps]" in label for label in labels) == 51
    assert not any("digits-vit/heads [layer-wise]" in label for label in labels)


def test_finetuning_is_reproducible_and_leaves_torch_s_generator_as_it_was():
    from pxp_bench.recovery import recovered_copy

    prepared = _prepared(recover="finetune", recover_steps=4)
    keep = {group.name: torch.ones(group.size, dtype=torch.bool) for group in prepared.components.groups}

    def weights(seed):
        model = recovered_copy(prepared.model, prepared.components, keep, None, recover="finetune", steps=4,
                               samples=prepared.samples("recovery"), device=prepared.device, task=prepared.task,
                               class_ids=prepared.sets.classes, seed=seed)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = weights(0)
    assert torch.equal(torch.rand(1), before)  # the caller's generator is untouched
    assert torch.equal(first, weights(0)) and not torch.equal(first, weights(1))  # dropout draws from the seed

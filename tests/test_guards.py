"""What a run checks of a plugin's output every time (`pxp_bench.guards`), and the kit's share of it."""

from __future__ import annotations

import re
import textwrap

import optuna
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from helpers import QUICK_RATES, write_image_folder
from pxp_bench import (Benchmark, DatasetSpec, DatasetSplits, LoadedModel, MethodSpec, ModelSpec, OptimizerSpec,
                       hookimpl, run_benchmark)
from pxp_bench.benchmark import prepare
from pxp_bench.data.digits import load_digits_splits
from pxp_bench.data.tensors import LabelledTensors
from pxp_bench.errors import DataError, PluginError
from pxp_bench.plugins import Plugins
from pxp_bench.testing import ConformanceError, check_dataset, check_method, check_model, check_optimizer

BUILTINS = Plugins(load_external=False)


def _plugins(*methods: MethodSpec, datasets: tuple[DatasetSpec, ...] = ()) -> Plugins:
    class Odd:
        @hookimpl
        def register_methods(self, register):
            for method in methods:
                register(method)

        @hookimpl
        def register_datasets(self, register):
            for dataset in datasets:
                register(dataset)

    return Plugins(load_external=False, extra=(Odd(),))


def _run(plugins: Plugins, **options):
    return run_benchmark(Benchmark(rates=QUICK_RATES, n_classes=3, ref_per_class=2, latency_repeats=0, **options),
                         plugins=plugins)


# --- item 1: scores are exactly one finite float per component -----------------------------------------

SCORE_FORMS = {
    "column": (lambda group: torch.rand(group.size, 1), r"have shape \(16, 1\); expected \(16,\)"),
    "rows": (lambda group: torch.rand(2, group.size // 2), r"have shape \(2, 8\); expected \(16,\)"),
    "list": (lambda group: [float(i) for i in range(group.size)], r"are a list; expected a tensor of shape \(16,\)"),
    "integers": (lambda group: torch.arange(group.size), r"have dtype torch.int64; expected a floating dtype"),
}


@pytest.mark.parametrize("form", sorted(SCORE_FORMS))
def test_scores_that_are_not_one_flat_float_per_component_are_refused(form):
    make, message = SCORE_FORMS[form]

    def score(model, components, reference, context):
        return {group.name: make(group) for group in components.groups}

    plugins = _plugins(MethodSpec(name=f"odd-{form}", score=score, summary="x"))
    with pytest.raises(PluginError, match=rf"^method 'odd-{form}' from plugin 'Odd' \(.*\) returned unusable scores: "
                                          rf"scores for 'features.0' {message}"):
        _run(plugins, method=f"odd-{form}")


def test_a_scores_mapping_is_required():
    plugins = _plugins(MethodSpec(name="odd-tuple", summary="x",
                                  score=lambda model, components, reference, context: (1.0, 2.0)))
    with pytest.raises(PluginError, match=r"method 'odd-tuple' .* returned unusable scores: scores are a tuple, not a mapping; return "
                                          r"\{group name: 1-D tensor\}"):
        _run(plugins, method="odd-tuple")


def test_an_installed_methods_unusable_scores_are_one_line_and_write_nothing(install_plugin, tmp_path):
    install_plugin("odd-scores", textwrap.dedent('''
        import pxp_bench, torch

        def column(model, components, reference, context):
            return {group.name: torch.rand(group.size, 1) for group in components.groups}

        @pxp_bench.hookimpl
        def register_methods(register):
            register(pxp_bench.MethodSpec(name="column", score=column, summary="scores as a column"))
    '''))
    from pxp_bench.cli import app

    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--method", "column", "--rates", "0,0.5", "--classes", "3",
                                      "--latency-repeats", "0", "--out", str(out)])
    lines = [line for line in result.output.strip().splitlines() if not line.startswith(("scoring", "evaluating"))]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert lines == ["Error: method 'column' from plugin 'odd-scores' (odd-scores 1.2.3) returned unusable scores: "
                     "scores for 'features.0' have shape (16, 1); expected (16,)."], result.output
    assert not out.exists() or not any(out.iterdir())


# --- item 2: the model is left as the method found it ------------------------------------------------------

def _varied(components):
    return {group.name: torch.arange(group.size, dtype=torch.float32) for group in components.groups}


def _zeroing_hook(model, components, reference, context):
    site = dict(model.named_modules())[components.groups[1].site]
    site.register_forward_hook(lambda module, args, output: output * 0)
    return _varied(components)


def _train_mode(model, components, reference, context):
    model.train()
    return _varied(components)


def _through_data(model, components, reference, context):
    next(model.parameters()).data.mul_(0.5)  # .data: no version counter notices this
    return _varied(components)


def _patched_forward(model, components, reference, context):
    site = dict(model.named_modules())[components.groups[0].site]
    site.forward = site.forward
    return _varied(components)


LEFT_BEHIND = {
    "hook": (_zeroing_hook, "left hooks behind on features.4"),
    "train": (_train_mode, "changed a module's class or train/eval mode"),
    "data": (_through_data, r"changed the model's weights or buffers \(features.0.weight\)"),
    "patched": (_patched_forward, "left a patched forward on features.1"),
}


@pytest.mark.parametrize("left", sorted(LEFT_BEHIND))
def test_a_method_that_leaves_the_model_changed_is_refused(left):
    score, message = LEFT_BEHIND[left]
    plugins = _plugins(MethodSpec(name=f"leaves-{left}", score=score, summary="x"))
    with pytest.raises(PluginError, match=rf"^method 'leaves-{left}' from plugin 'Odd' \(.*\) left the model changed "
                                          rf"after scoring: {message}"):
        _run(plugins, method=f"leaves-{left}")


# --- item 3: a dataset's items and files before any work -------------------------------------------------------

def _digits_with(split: str, reshape) -> DatasetSplits:
    base = load_digits_splits()
    parts = {"train": base.train, "eval": base.eval}
    parts[split] = LabelledTensors(reshape(parts[split].inputs), parts[split].targets)
    return DatasetSplits(train=parts["train"], eval=parts["eval"], num_classes=10,
                         class_names=[str(i) for i in range(10)], input_shape=(1, 32, 32))


@pytest.mark.parametrize("split, reshape, shape", [
    ("train", lambda inputs: inputs.squeeze(1), "(32, 32)"),
    ("eval", lambda inputs: inputs[:, :, :16], "(1, 16, 32)"),
])
def test_items_that_differ_from_the_declared_input_shape_are_refused_before_any_work(split, reshape, shape):
    plugins = _plugins(datasets=(DatasetSpec(name="odd-items", summary="x",
                                             load=lambda name, root: _digits_with(split, reshape)),))
    with pytest.raises(DataError, match=rf"^dataset 'odd-items' from plugin 'Odd' \(.*\): item 0 of split '{split}' "
                                        rf"has shape {re.escape(shape)}, but the dataset declares input_shape \(1, 32, 32\)"):
        prepare(Benchmark(dataset="odd-items", method="magnitude", rates=QUICK_RATES), plugins=plugins)


def test_items_that_are_not_tensors_are_refused():
    class NumpyItems(torch.utils.data.Dataset):
        def __init__(self, split):
            self.split, self.targets = split, split.targets

        def __len__(self):
            return len(self.split)

        def __getitem__(self, index):
            image, label = self.split[index]
            return image.numpy(), label

    def load(name, root):
        base = load_digits_splits()
        return DatasetSplits(train=base.train, eval=NumpyItems(base.eval), num_classes=10,
                             class_names=base.class_names, input_shape=(1, 32, 32))

    plugins = _plugins(datasets=(DatasetSpec(name="numpy-items", summary="x", load=load),))
    with pytest.raises(DataError, match=r"dataset 'numpy-items' .*: item 0 of split 'eval' is a ndarray, not a tensor"):
        prepare(Benchmark(dataset="numpy-items", method="magnitude", rates=QUICK_RATES), plugins=plugins)


@pytest.mark.parametrize("damage, reason", [
    (lambda path: path.write_text("not an image"), "not an image format PIL can decode"),
    (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
     r"image file is truncated \(\d+ bytes not processed\)"),
])
def test_a_corrupt_evaluation_image_is_named_before_scoring(tmp_path, damage, reason):
    root = write_image_folder(tmp_path / "data", ["a", "b"], per_split=(2, 2))
    broken = root / "val" / "b" / "img1.jpg"
    damage(broken)
    bench = Benchmark(model="resnet18", weights="none", dataset="imagefolder", data_root=str(root), image_size=32,
                      rates=(0.0, 0.5), method="magnitude", ref_per_class=2)
    with pytest.raises(DataError, match=rf"^cannot read image .*img1.jpg: {reason}\. Remove or replace the file\.$"):
        prepare(bench, plugins=BUILTINS)


# --- item 4: the kit reports every failure as a ConformanceError -------------------------------------------------

@pytest.mark.parametrize("check, spec, message", [
    (check_method, "no-such-method", "method 'no-such-method': unknown method"),
    (check_model, "no-such-model", "model 'no-such-model': unknown model"),
    (check_dataset, "no-such-data", "dataset 'no-such-data': unknown dataset"),
    (check_optimizer, "no-such-optimizer", "optimizer 'no-such-optimizer': unknown optimizer"),
    (check_method, MethodSpec(name="unimportable", score="no_such_module:score", summary="x"),
     "method 'unimportable': .*cannot import 'no_such_module:score'"),
    (check_model, ModelSpec(name="unimportable", build="no_such_module:build", summary="x"),
     "model 'unimportable': .*cannot import 'no_such_module:build'"),
    (check_dataset, DatasetSpec(name="unimportable", load="pxp_bench:no_such_loader", summary="x"),
     "dataset 'unimportable': .*cannot import 'pxp_bench:no_such_loader'"),
    (check_optimizer, OptimizerSpec(name="unimportable", run="no_such_module:run", summary="x"),
     "optimizer 'unimportable': .*cannot import 'no_such_module:run'"),
])
def test_the_kit_reports_unknown_names_and_unimportable_callables(check, spec, message):
    with pytest.raises(ConformanceError, match=message):
        check(spec, plugins=BUILTINS)


def _pruned_as_complete(study, space, objective, *, trials, timeout, seed, callbacks=()):
    """Asks and tells itself, and tells a stopped trial's last report as its value."""
    study.sampler = optuna.samplers.RandomSampler(seed=seed)
    for _ in range(trials):
        trial = study.ask()
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            reported = study.get_trials(deepcopy=False)[trial.number]
            value = reported.intermediate_values[reported.last_step]
        frozen = study.tell(trial, value)
        for callback in callbacks:
            callback(study, frozen)


def _climbs_from_stopped(study, space, objective, *, trials, timeout, seed, callbacks=()):
    """A hill climber that takes a stopped trial's last report for its value and proposes around the best."""
    import random

    rng = random.Random(seed)
    for _ in range(trials):
        if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
            best = max(done, key=lambda t: t.value if t.value is not None else t.intermediate_values[t.last_step])
            point = dict(best.params)
            point["strength"] = min(1.0, max(0.0, point["strength"] + rng.uniform(-0.05, 0.05)))
            study.enqueue_trial(point)
        study.optimize(objective, n_trials=1, callbacks=list(callbacks))


@pytest.mark.parametrize("run, message", [
    (_pruned_as_complete, "recorded the stopped trial 2 as COMPLETE"),
    (_climbs_from_stopped, "proposed other trials after a stopped trial whose partial reports differed"),
])
def test_the_kit_fails_an_optimizer_that_treats_stopped_trials_as_improvements(run, message):
    with pytest.raises(ConformanceError, match=f"optimizer 'bad': {message}"):
        check_optimizer(OptimizerSpec(name="bad", run=run, summary="x"), plugins=BUILTINS)


# --- item 5: a model without Conv2d is a CNN-family model scored on its neurons -----------------------------------

def _mlp(name, weights=None, num_classes=None, image_size=None):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 64), nn.ReLU(), nn.Linear(64, num_classes or 10))
    return LoadedModel(module=module, family="cnn", num_classes=num_classes or 10, input_shape=(1, 32, 32),
                       weights="random:seed0")


def test_a_model_without_conv2d_passes_the_kit_and_runs_on_its_neurons():
    class Mlp:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(name="mlp", build=_mlp, summary="x", default_dataset="digits"))

    plugins = Plugins(load_external=False, extra=(Mlp(),))
    check_model("mlp", plugins=plugins)
    result = run_benchmark(Benchmark(model="mlp", components="neurons", method="taylor", rates=QUICK_RATES,
                                     latency_repeats=0), plugins=plugins)
    assert result.samples["components"] == 64

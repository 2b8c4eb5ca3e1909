"""The conformance kit: every built-in passes it, and it catches each breach it promises to catch."""

from __future__ import annotations

import optuna
import pytest
import torch

from helpers import FAST_PARAMS
from pxp_bench import Categorical, DatasetSpec, DatasetSplits, MethodSpec, OptimizerSpec, hookimpl
from pxp_bench.api import LabelledTensors, captured_sites
from pxp_bench.plugins import Plugins
from pxp_bench.testing import ConformanceError, check_dataset, check_method, check_model, check_optimizer

BUILTINS = Plugins(load_external=False)
CATEGORICAL_SPACE = {"rule": Categorical(("a", "b", "c"), "a"), "group": Categorical(("x", "y", "z"), "x")}


KIT_PARAMS = FAST_PARAMS
"""The kit checks the contract, not the attribution's quality (`helpers.FAST_PARAMS`)."""


@pytest.mark.matrix
@pytest.mark.parametrize("method", BUILTINS.methods.names())
def test_every_builtin_method_passes(method):
    check_method(method, params=KIT_PARAMS.get(method), plugins=BUILTINS)


@pytest.mark.parametrize("model", [*BUILTINS.models.names("digits-*"), "tiny-llama"])
def test_every_zoo_model_passes(model):
    check_model(model, plugins=BUILTINS)


def test_builtin_datasets_pass(imagenet_like):
    assert check_dataset("digits", plugins=BUILTINS).num_classes == 10
    assert check_dataset("imagenet", root=str(imagenet_like), plugins=BUILTINS).num_classes == 3
    assert check_dataset("lm-corpus", plugins=BUILTINS).input_shape == (64,)


@pytest.mark.parametrize("optimizer", BUILTINS.optimizers.names())
def test_every_builtin_optimizer_passes(optimizer):
    check_optimizer(optimizer, space=CATEGORICAL_SPACE if optimizer == "grid" else None, plugins=BUILTINS)


# --- methods that break the contract, one way each --------------------------------------------------

def _hook_left_behind(model, components, reference, context):
    modules = dict(model.named_modules())
    modules[components.groups[0].site].register_forward_hook(lambda *args: None)
    return _varied(components)


def _mutates_weights(model, components, reference, context):
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    return _varied(components)


def _nan(model, components, reference, context):
    scores = _varied(components)
    scores[components.names[0]][0] = float("nan")
    return scores


def _constant(model, components, reference, context):
    return {group.name: torch.ones(group.size) for group in components.groups}


def _wrong_shape(model, components, reference, context):
    return {group.name: torch.rand(group.size, 2) for group in components.groups}


def _leaves_gradients(model, components, reference, context):
    with torch.enable_grad():
        for inputs, targets in reference.batches():
            model(inputs).gather(1, targets[:, None]).sum().backward()  # fills .grad, never cleared
    return _varied(components)


def _nondeterministic(model, components, reference, context):
    return {group.name: torch.rand(group.size) for group in components.groups}  # global RNG, not the context's


def _leaks_when_raising(model, components, reference, context):
    """Captures sites properly, but adds a hook of its own outside any `with` block before reading data."""
    modules = dict(model.named_modules())
    modules[components.groups[0].site].register_forward_pre_hook(lambda *args: None)
    try:
        with captured_sites(model, components):
            for inputs, _ in reference.batches():
                model(inputs)
    except RuntimeError:
        raise
    for module in modules.values():  # only cleans up on success
        module._forward_pre_hooks.clear()
    return _varied(components)


def _varied(components):
    return {group.name: torch.arange(group.size, dtype=torch.float32) for group in components.groups}


BREACHES = {
    "hook": (_hook_left_behind, "left hooks behind on"),
    "mutates": (_mutates_weights, "changed the model's weights or buffers"),
    "nan": (_nan, "scores for 'features.0' are not all finite"),
    "constant": (_constant, "gave every component the same score"),
    "shape": (_wrong_shape, r"scores for 'features.0' have shape \(\d+, 2\); expected \(\d+,\)"),
    "random": (_nondeterministic, "gave different scores on a second call with the same seed"),
    "grads": (_leaves_gradients, "left gradients in the parameters' .grad"),
    "raising": (_leaks_when_raising, "when scoring raised, left hooks behind"),
}


@pytest.mark.parametrize("breach", sorted(BREACHES))
def test_the_kit_names_a_method_that_breaks_the_contract(breach):
    score, message = BREACHES[breach]

    class Bad:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name=f"bad-{breach}", score=score, summary="breaks the contract",
                                families=frozenset({"cnn"}), components=frozenset({"filters"})))

    with pytest.raises(ConformanceError, match=f"method 'bad-{breach}' on digits-vgg filters: {message}"):
        check_method(f"bad-{breach}", plugins=Plugins(load_external=False, extra=(Bad(),)))


def test_the_kit_names_a_bad_declaration():
    from pxp_bench import FloatRange

    bad = MethodSpec(name="bad-space", score=_varied, summary="x", params={"eps": FloatRange(0.0, 1.0, 2.0)})
    with pytest.raises(ConformanceError, match="method 'bad-space': the parameter 'eps' has a default outside"):
        check_method(bad, plugins=BUILTINS)


def _fails_away_from_its_default(model, components, reference, context, mode="plain", strength=0.5):
    if mode != "plain":
        raise RuntimeError(f"mode {mode} is broken")
    return _varied(components)


def test_the_kit_scores_points_drawn_from_the_space_besides_the_defaults():
    from pxp_bench import FloatRange

    spec = MethodSpec(name="bad-off-default", score=_fails_away_from_its_default, summary="x",
                      families=frozenset({"cnn"}), components=frozenset({"filters"}),
                      params={"mode": Categorical(("plain", "fancy"), "plain"), "strength": FloatRange(0.0, 1.0, 0.5)})
    with pytest.raises(ConformanceError, match=r"method 'bad-off-default' on digits-vgg filters at mode='fancy', "
                                               r"strength=[0-9.]+: scoring raised RuntimeError: mode fancy is broken "
                                               r"\(the defaults passed"):
        check_method(spec, plugins=BUILTINS)
    check_method(spec, points=0, plugins=BUILTINS)  # the defaults only
    check_method(spec, params={"mode": "plain"}, plugins=BUILTINS)  # a parameter given stays fixed


def test_the_kit_names_a_bad_dataset():
    def load(name, root):
        data = LabelledTensors(torch.zeros(4, 1, 2, 2), [0, 1, 2, 1])  # label 2 of 2 classes
        return DatasetSplits(train=data, eval=data, num_classes=2, class_names=["a", "b"], input_shape=(1, 2, 2))

    with pytest.raises(ConformanceError, match="dataset 'bad': split 'train' has labels outside 0..1"):
        check_dataset(DatasetSpec(name="bad", load=load, summary="x"), plugins=BUILTINS)


def _unseeded(study, space, objective, *, trials, timeout, seed, callbacks=()):
    study.sampler = optuna.samplers.RandomSampler()  # ignores the seed
    study.optimize(objective, n_trials=trials, callbacks=list(callbacks))


def _one_short(study, space, objective, *, trials, timeout, seed, callbacks=()):
    study.sampler = optuna.samplers.RandomSampler(seed=seed)
    study.optimize(objective, n_trials=trials - 1, callbacks=list(callbacks))


@pytest.mark.parametrize("run, message", [
    (_unseeded, "proposed another sequence under the same seed"),
    (_one_short, "ran 5 trials; asked for 6"),
])
def test_the_kit_names_a_bad_optimizer(run, message):
    with pytest.raises(ConformanceError, match=f"optimizer 'bad': {message}"):
        check_optimizer(OptimizerSpec(name="bad", run=run, summary="x"), plugins=BUILTINS)

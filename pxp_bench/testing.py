"""The conformance kit: call these from a plugin's own tests (``pytest``), as ours do for every built-in.

- `check_method`: the declared components and parameter space are valid; scores on a real model and
  real reference data have the right groups and shapes, are finite and not constant; the model is
  bitwise unchanged and free of hooks afterwards, also when scoring raises; the same seed gives the
  same scores.
- `check_model`: it builds, its forward pass gives one finite logit per class, its components are
  found, and two builds are identical.
- `check_dataset`: every split is non-empty and labelled within the classes, items have the declared
  shape, and two loads are identical.
- `check_optimizer`: it runs the enqueued default first, then exactly the trials asked for, within the
  space, calls the callbacks, and repeats its sequence under the same seed; a trial the objective stops
  stays stopped (PRUNED, no value) and its partial reports never steer later proposals.

Each raises `ConformanceError` (an ``AssertionError``) whose message names the plugin and the problem, also
for an unknown name or a ``"module:function"`` callable that cannot be imported. The checks a run repeats
every time (scores, the model after scoring, a dataset's items) are `pxp_bench.guards`, shared with the kit.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch.utils.data import Dataset, Subset

from pxp_bench.errors import ComponentError, DataError, PxpBenchError
from pxp_bench.guards import check_items, check_scores, model_state, state_changes
from pxp_bench.params import Categorical, FloatRange, IntRange, ParamSpace, resolve_params
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.specs import COMPONENT_KINDS, FAMILIES, LANGUAGE_MODELLING, DatasetSpec, MethodSpec, ModelSpec, OptimizerSpec

KIT_MODELS = {"cnn": "digits-vgg", "transformer": "digits-vit", "lm": "tiny-llama"}
"""The embedded models a method is checked on, per family it declares."""
KIT_RATES = (0.0, 0.5)
"""The kit scores, it does not evaluate: a grid any of the kit's models can prune (the standard grid would
prune none of tiny-llama's 8 heads at its lowest rates, and is refused there)."""
FAMILY_KINDS = {"cnn": ("filters", "neurons"), "transformer": ("heads", "neurons"), "lm": ("heads", "neurons")}
"""The component kinds a model of each family can have (a CNN without Conv2d, an MLP, has neurons only)."""


class ConformanceError(AssertionError):
    """A plugin breaks the contract; the message says which plugin and what."""


def _fail(owner: str, problem: str) -> None:
    raise ConformanceError(f"{owner}: {problem}")


def _spec(registry, spec_or_name, kind: str):
    """The spec itself, or the one registered under a name; an unknown name fails the check."""
    if not isinstance(spec_or_name, str):
        return spec_or_name
    try:
        return registry.get(spec_or_name)
    except PxpBenchError as exc:
        _fail(f"{kind} '{spec_or_name}'", str(exc))


def _loaded(owner: str, load):
    """``load()`` (a spec's ``load_*``: imports a ``"module:function"`` string); a failure fails the check."""
    try:
        return load()
    except PxpBenchError as exc:
        _fail(owner, str(exc).removeprefix(f"{owner}: "))


# --- methods ---------------------------------------------------------------------------------------

def _check_space(owner: str, space: ParamSpace, where: str) -> None:
    for key, param in space.items():
        if not isinstance(param, (Categorical, IntRange, FloatRange)):
            _fail(owner, f"{where} parameter '{key}' is a {type(param).__name__}; declare Categorical, IntRange "
                         "or FloatRange.")
        if isinstance(param, Categorical) and not param.choices:
            _fail(owner, f"{where} parameter '{key}' has no choices.")
        try:
            param.validate(param.default)
        except ValueError as exc:
            _fail(owner, f"{where} parameter '{key}' has a default outside its range ({param.default!r}: {exc}).")


def check_method_spec(method: MethodSpec) -> None:
    """The declaration alone: components, families, parameters and presets."""
    owner = f"method '{method.name}'"
    if not method.summary:
        _fail(owner, "has no summary (shown by `pxp-bench list methods`).")
    if not method.components or not set(method.components) <= set(COMPONENT_KINDS):
        _fail(owner, f"components {sorted(method.components)} must be a non-empty subset of {list(COMPONENT_KINDS)}.")
    if not method.families or not set(method.families) <= set(FAMILIES):
        _fail(owner, f"families {sorted(method.families)} must be a non-empty subset of {list(FAMILIES)}.")
    _check_space(owner, method.params, "the")
    for family, extra in method.family_params.items():
        if family not in FAMILIES:
            _fail(owner, f"family_params names unknown family '{family}'.")
        _check_space(owner, extra, f"the {family}")
    for family in method.families:
        for preset, values in method.presets.items():
            try:
                resolve_params(method.space_for(family), owner=f"{owner}, preset '{preset}'", values=values)
            except Exception as exc:  # the core's own one-line message says what does not fit
                _fail(owner, f"preset '{preset}' does not fit its space on a {family}: {exc}")
    _loaded(owner, method.load_score)


class _FailingData(Dataset):
    """The reference data, failing in the second batch: scoring raises half-way."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if index >= 4:  # the second batch of 4
            raise RuntimeError("conformance kit: deliberate failure while reading the reference data")
        return self.dataset[index]


def check_method(method: MethodSpec | str, *, params: Mapping[str, Any] | None = None,
                 plugins: Plugins | None = None) -> None:
    """Score with ``method`` on each family and component kind it declares (on the embedded zoo models,
    `KIT_MODELS`), under its defaults updated by ``params``, and check the contract."""
    from pxp_bench.attribution.reference import ReferenceSet, RunContext
    from pxp_bench.benchmark import prepare
    from pxp_bench.plan import Benchmark

    plugins = plugins or get_plugins()
    method = _spec(plugins.methods, method, "method")
    check_method_spec(method)
    if method.name not in plugins.methods or plugins.methods.get(method.name) is not method:
        plugins = _with_method(method)
    score = method.load_score()
    for family in sorted(method.families):
        for kind in [kind for kind in FAMILY_KINDS[family] if kind in method.components]:
            owner = f"method '{method.name}' on {KIT_MODELS[family]} {kind}"
            prepared = prepare(Benchmark(method=method.name, model=KIT_MODELS[family], components=kind,
                                         n_classes=None if family == "lm" else 3, rates=KIT_RATES,
                                         ref_per_class=3, tune_per_class=0, params=dict(params or {})),
                               plugins=plugins)
            model, components = prepared.model, prepared.components
            values = dict(prepared.plan.params)
            data = Subset(prepared.splits.train, prepared.sets.reference)

            def run(dataset: Dataset, seed: int = 0) -> dict[str, torch.Tensor]:
                reference = ReferenceSet(dataset, prepared.sets.classes, 4, prepared.device, prepared.task)
                return score(model, components, reference, RunContext.seeded(seed, prepared.device), **values)

            before = model_state(model, exact=True)
            try:
                scores = run(data)
            except Exception as exc:
                _fail(owner, f"scoring raised {type(exc).__name__}: {exc}")
            if problems := state_changes(before, model):
                _fail(owner, "; ".join(problems) + ". Undo every change in a `with` block or try / finally.")
            _check_scores(owner, components, scores)
            again = run(data)
            if any(not torch.equal(scores[name], again[name]) for name in scores):
                _fail(owner, "gave different scores on a second call with the same seed; draw randomness only "
                             "from context.generator / context.sample_generator.")
            try:
                run(_FailingData(data))
            except Exception:  # expected: the point is what the model looks like afterwards
                pass
            if problems := state_changes(before, model):
                _fail(owner, "when scoring raised, " + "; ".join(problems)
                      + ". Undo every change in a `with` block or try / finally.")


def _with_method(method: MethodSpec) -> Plugins:
    """The built-ins plus ``method``, for a spec that is not registered (or not the registered one)."""
    from pxp_bench.hookspecs import hookimpl

    class KitMethod:
        @hookimpl
        def register_methods(self, register) -> None:
            register(method)

    plugins = Plugins(load_external=False, extra=(KitMethod(),))
    if plugins.methods.get(method.name) is not method:
        _fail(f"method '{method.name}'", "has the name of a built-in method; choose another name.")
    return plugins


def _check_scores(owner: str, components, scores) -> None:
    try:
        check_scores(components, scores)
    except ComponentError as exc:
        _fail(owner, str(exc))
    flat = torch.cat([scores[group.name].detach().double().cpu() for group in components.groups])
    if torch.all(flat == flat[0]):
        _fail(owner, "gave every component the same score: that ranks nothing.")


# --- models and datasets ---------------------------------------------------------------------------

def check_model(model: ModelSpec | str, *, weights: str | None = None, plugins: Plugins | None = None):
    """Build ``model`` (default weights, or ``weights``) for its default dataset and check it; returns
    the `LoadedModel`."""
    from pxp_bench.components import discover_components
    from pxp_bench.specs import LoadedModel

    plugins = plugins or get_plugins()
    spec = _spec(plugins.models, model, "model")
    owner = f"model '{spec.name}'"
    if spec.family not in FAMILIES:
        _fail(owner, f"family '{spec.family}' is not one of {list(FAMILIES)}.")
    num_classes = None
    if spec.default_dataset is not None:
        num_classes = check_dataset(spec.default_dataset, plugins=plugins).num_classes
    build_model = _loaded(owner, spec.load_build)

    def build() -> LoadedModel:
        loaded = build_model(spec.name, weights=weights, num_classes=num_classes, image_size=None)
        if not isinstance(loaded, LoadedModel):
            _fail(owner, f"build returned {type(loaded).__name__}; return a pxp_bench.LoadedModel.")
        return loaded

    loaded = build()
    if loaded.family != spec.family:
        _fail(owner, f"built a '{loaded.family}' model but is registered as '{spec.family}'.")
    if not isinstance(loaded.weights, str) or not loaded.weights:
        _fail(owner, "LoadedModel.weights must name the weights (e.g. 'packaged:<sha256>', 'random:seed0').")
    if num_classes is not None and loaded.num_classes != num_classes:
        _fail(owner, f"has {loaded.num_classes} classes; its default dataset '{spec.default_dataset}' has {num_classes}.")
    module = loaded.module.eval()
    sequences = loaded.task == LANGUAGE_MODELLING  # token ids in, (batch, tokens, vocabulary) out
    example = torch.zeros(2, *loaded.input_shape, dtype=torch.long if sequences else torch.float32)
    with torch.no_grad():
        logits = module(example)
    expected = (2, *loaded.input_shape) if sequences else (2, loaded.num_classes)
    if tuple(logits.shape[:len(expected)]) != expected or not torch.isfinite(logits).all():
        _fail(owner, f"maps a batch of 2 inputs of shape {tuple(loaded.input_shape)} to {tuple(logits.shape)}; "
                     f"expected {expected}{' x vocabulary' if sequences else ''} finite logits.")
    reasons = []
    for kind in FAMILY_KINDS[spec.family]:  # an MLP registered as a CNN has neurons, not filters
        try:
            discover_components(module, kind, example[:1])
            break
        except ComponentError as exc:
            reasons.append(str(exc))
    else:
        _fail(owner, f"has no {' or '.join(FAMILY_KINDS[spec.family])} pxp-bench can find: {reasons[0]}")
    twin = build()
    first, second = module.state_dict(), twin.module.state_dict()
    if set(first) != set(second) or any(not torch.equal(first[k], second[k]) for k in first) \
            or twin.weights != loaded.weights:
        _fail(owner, "two builds differ; seed any random initialisation (e.g. torch.manual_seed in build).")
    return loaded


def check_dataset(dataset: DatasetSpec | str, *, root: str | None = None, plugins: Plugins | None = None):
    """Load ``dataset`` (from ``root`` when it needs one) and check its splits; returns the `DatasetSplits`."""
    from pxp_bench.specs import DatasetSplits

    plugins = plugins or get_plugins()
    spec = _spec(plugins.datasets, dataset, "dataset")
    owner = f"dataset '{spec.name}'"
    if spec.needs_root and root is None:
        _fail(owner, "needs a root folder: pass root= to check_dataset.")
    load = _loaded(owner, spec.load_splits)
    splits = load(spec.name, root)
    if not isinstance(splits, DatasetSplits):
        _fail(owner, f"load returned {type(splits).__name__}; return a pxp_bench.DatasetSplits.")
    if splits.task not in plugins.tasks:
        _fail(owner, f"declares task '{splits.task}', which no plugin registers ({', '.join(plugins.tasks.names())}).")
    if splits.task == LANGUAGE_MODELLING:
        return _check_sequences(owner, splits, lambda: load(spec.name, root))
    if splits.num_classes < 2 or len(splits.class_names) != splits.num_classes:
        _fail(owner, f"declares {splits.num_classes} classes and {len(splits.class_names)} class names; "
                     "at least 2, one name each.")
    for name in ("train", "eval", "tune"):
        split = getattr(splits, name)
        if split is None:
            if name == "tune":
                continue
            _fail(owner, f"has no '{name}' split.")
        raw = getattr(split, "targets", None)
        targets = [] if raw is None else [t.item() if hasattr(t, "item") else t for t in raw]
        if len(targets) == 0 or len(targets) != len(split):
            _fail(owner, f"split '{name}' has {len(split)} samples and {len(targets)} targets; it needs a "
                         "`targets` sequence with one label per sample.")
        if any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < splits.num_classes for t in targets):
            _fail(owner, f"split '{name}' has labels outside 0..{splits.num_classes - 1} or that are not int.")
        _, label = split[0]
        if int(label) != targets[0]:
            _fail(owner, f"split '{name}' item 0 has label {label}, but its targets say {targets[0]}.")
    if splits.input_shape:  # image files: the model's transform decides the shape (use_transform)
        try:
            check_items(splits, owner)
        except DataError as exc:
            raise ConformanceError(str(exc)) from None
    if sorted(set(splits.train.targets)) != list(range(splits.num_classes)):
        _fail(owner, "the train split lacks some classes; reference samples are drawn from it for every class.")
    again = load(spec.name, root)
    if list(again.train.targets) != list(splits.train.targets) or list(again.eval.targets) != list(splits.eval.targets):
        _fail(owner, "two loads give different splits; split with a fixed seed.")
    return splits


def _check_sequences(owner: str, splits, load_again):
    """A language-modelling dataset: items ``(token ids, the same ids)`` of integer dtype, of ``input_shape``
    once it has one (text files take the model's tokenizer first), the same on a second load."""
    for name in ("train", "eval", "tune"):
        split = getattr(splits, name)
        if split is None and name != "tune":
            _fail(owner, f"has no '{name}' split.")
        if split is None or not splits.input_shape:
            continue
        if len(split) == 0:
            _fail(owner, f"split '{name}' holds no sequence.")
        tokens, labels = split[0]
        if tokens.is_floating_point() or not torch.equal(tokens, labels):
            _fail(owner, f"split '{name}' item 0 is not (token ids, the same token ids) of an integer dtype.")
    if splits.input_shape:
        try:
            check_items(splits, owner)
        except DataError as exc:
            raise ConformanceError(str(exc)) from None
        if not torch.equal(load_again().eval[0][0], splits.eval[0][0]):
            _fail(owner, "two loads give different splits; split with a fixed seed.")
    return splits


# --- optimizers ------------------------------------------------------------------------------------

KIT_SPACE: ParamSpace = {
    "rule": Categorical(("a", "b", "c"), "a"),
    "strength": FloatRange(0.0, 1.0, 0.5),
    "steps": IntRange(1, 8, 2),
}
"""A small mixed space; pass an all-categorical one for optimizers that need it (e.g. ``grid``)."""


STOPPED_TRIAL = 2
"""The trial the kit's objective stops, as a pruner would, after a partial report of its choosing."""


def _kit_objective(space: ParamSpace, stopped_report: float):
    """A cheap deterministic objective over ``space`` (values <= 0); trial `STOPPED_TRIAL` is stopped after
    reporting ``stopped_report``: a partial curve, which is no value and must not steer the search."""
    import optuna

    from pxp_bench.optimize.study import suggest

    def objective(trial) -> float:
        values = suggest(trial, space)
        trial.report(0.0, 0)
        if trial.number == STOPPED_TRIAL:
            trial.report(stopped_report, 1)
            raise optuna.TrialPruned()  # as a pruner would stop it
        value = 0.0
        for key, param in sorted(space.items()):
            if isinstance(param, Categorical):
                where = param.choices.index(values[key]) / max(1, len(param.choices) - 1)
            else:
                where = (values[key] - param.low) / (param.high - param.low)
            value -= (where - 0.3) ** 2
        return value

    return objective


def _inside(param, value) -> bool:
    if isinstance(param, Categorical):
        return value in param.choices
    return param.low <= value <= param.high


def check_optimizer(optimizer: OptimizerSpec | str, *, trials: int = 6, space: ParamSpace | None = None,
                    plugins: Plugins | None = None) -> None:
    """Run ``optimizer`` for ``trials`` trials on ``space`` (default `KIT_SPACE`), the space's defaults
    enqueued first as the pipeline does, and check it: twice with the same seed, and once more where the
    stopped trial reported far below every value instead of far above it. An optimizer that takes a stopped
    trial's partial reports for its value (and proposes around it) proposes differently the third time."""
    import optuna

    plugins = plugins or get_plugins()
    spec = _spec(plugins.optimizers, optimizer, "optimizer")
    owner = f"optimizer '{spec.name}'"
    space = dict(space or KIT_SPACE)
    run = _loaded(owner, spec.load_run)
    default = {key: param.default for key, param in space.items()}
    sequences = []
    for stopped_report in (1e3, 1e3, -1e3):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial(default)
        seen: list[int] = []
        try:
            run(study, space, _kit_objective(space, stopped_report), trials=trials, timeout=None, seed=7,
                callbacks=[lambda _study, trial: seen.append(trial.number)])
        except Exception as exc:
            _fail(owner, f"raised {type(exc).__name__}: {exc}")
        finished = [t for t in study.trials if t.state.is_finished()]
        if len(finished) != trials:
            _fail(owner, f"ran {len(finished)} trials; asked for {trials}.")
        if finished[0].params != default:
            _fail(owner, "did not run the enqueued trial (the method's default) first.")
        if sorted(seen) != [t.number for t in finished]:
            _fail(owner, "did not call the callbacks once for every finished trial.")
        for trial in finished:
            if set(trial.params) != set(space) or not all(_inside(space[k], v) for k, v in trial.params.items()):
                _fail(owner, f"trial {trial.number} has parameters {trial.params} outside the space.")
        stopped = next((t for t in study.trials if t.number == STOPPED_TRIAL), None)
        if stopped is not None and stopped.state != optuna.trial.TrialState.PRUNED:
            _fail(owner, f"recorded the stopped trial {STOPPED_TRIAL} as {stopped.state.name}; a trial whose objective "
                         "raised optuna.TrialPruned has no value: leave it PRUNED.")
        sequences.append([t.params for t in finished])
    if sequences[0] != sequences[1]:
        _fail(owner, "proposed another sequence under the same seed; seed every random choice with `seed`.")
    if sequences[0] != sequences[2]:
        _fail(owner, "proposed other trials after a stopped trial whose partial reports differed; a stopped trial "
                     "has no value: never read its intermediate values as one (count it as worse than every "
                     "completed trial, or leave it out).")


__all__ = ["ConformanceError", "check_dataset", "check_method", "check_method_spec", "check_model", "check_optimizer"]

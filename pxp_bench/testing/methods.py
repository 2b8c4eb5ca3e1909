"""`check_method_spec` and `check_method`: a method's declaration, and its scores on real models at its
defaults and at seeded points of its space."""

from __future__ import annotations

import math
import random
from typing import Any, Mapping

import torch
from torch.utils.data import Dataset, Subset

from pxp_bench.errors import ComponentError
from pxp_bench.guards import check_scores, model_state, state_changes
from pxp_bench.params import Categorical, FloatRange, IntRange, ParamSpace, resolve_params, searched_space
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.specs import COMPONENT_KINDS, FAMILIES, MethodSpec
from pxp_bench.testing.kit import FAMILY_KINDS, KIT_MODELS, KIT_RATES, fail, imported, spec_from


def _check_space(owner: str, space: ParamSpace, where: str) -> None:
    for key, param in space.items():
        if not isinstance(param, (Categorical, IntRange, FloatRange)):
            fail(owner, f"{where} parameter '{key}' is a {type(param).__name__}; declare Categorical, IntRange "
                        "or FloatRange.")
        if isinstance(param, Categorical) and not param.choices:
            fail(owner, f"{where} parameter '{key}' has no choices.")
        try:
            param.validate(param.default)
        except ValueError as exc:
            fail(owner, f"{where} parameter '{key}' has a default outside its range ({param.default!r}: {exc}).")


def check_method_spec(method: MethodSpec) -> None:
    """The declaration alone: components, families, parameters and presets."""
    owner = f"method '{method.name}'"
    if not method.summary:
        fail(owner, "has no summary (shown by `pxp-bench list methods`).")
    if not method.components or not set(method.components) <= set(COMPONENT_KINDS):
        fail(owner, f"components {sorted(method.components)} must be a non-empty subset of {list(COMPONENT_KINDS)}.")
    if not method.families or not set(method.families) <= set(FAMILIES):
        fail(owner, f"families {sorted(method.families)} must be a non-empty subset of {list(FAMILIES)}.")
    _check_space(owner, method.params, "the")
    for family, extra in method.family_params.items():
        if family not in FAMILIES:
            fail(owner, f"family_params names unknown family '{family}'.")
        _check_space(owner, extra, f"the {family}")
    for family in method.families:
        for preset, values in method.presets.items():
            try:
                resolve_params(method.space_for(family), owner=f"{owner}, preset '{preset}'", values=values)
            except Exception as exc:  # the core's own one-line message says what does not fit
                fail(owner, f"preset '{preset}' does not fit its space on a {family}: {exc}")
    imported(owner, method.load_score)


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


KIT_POINTS_SEED = 0
"""The seed of the points `check_method` draws from a method's space."""


def drawn_points(space: ParamSpace, count: int, *, fixed: Mapping[str, Any] | None = None,
                 seed: int = KIT_POINTS_SEED) -> list[dict[str, Any]]:
    """Up to ``count`` distinct points drawn at random (seeded) from the searched parameters of ``space`` that
    ``fixed`` does not name, each unlike the defaults in at least one value: a categorical's choices, an
    integer or a float uniformly in its range (``log``: log-uniformly). Fewer when the space has fewer."""
    rng = random.Random(seed)
    free = {key: param for key, param in searched_space(space).items() if key not in (fixed or {})}

    def draw(param):
        if isinstance(param, Categorical):
            return rng.choice(param.choices)
        low, high = param.low, param.high
        if param.log and low > 0:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return min(high, max(low, round(value))) if isinstance(param, IntRange) else min(high, max(low, value))

    default = {key: param.default for key, param in free.items()}
    points: list[dict[str, Any]] = []
    for _ in range(20 * count):  # a small space runs out of new points
        if len(points) >= count or not free:
            break
        point = {key: draw(param) for key, param in free.items()}
        if point != default and point not in points:
            points.append(point)
    return points


def check_method(method: MethodSpec | str, *, params: Mapping[str, Any] | None = None, points: int = 2,
                 plugins: Plugins | None = None) -> None:
    """Score with ``method`` on each family and component kind it declares (on the embedded zoo models,
    `KIT_MODELS`), under its defaults updated by ``params``, and check the contract; then at ``points``
    seeded points of its searched space (`drawn_points`; the parameters in ``params`` stay fixed) on each
    family: each point on at least one of the family's kinds and each kind at one point at least, on the
    first reference batch, checking the scores and the model after scoring. ``points=0``: the defaults only."""
    from pxp_bench.attribution.reference import ReferenceSet, RunContext
    from pxp_bench.plan import Benchmark
    from pxp_bench.prepare import prepare

    plugins = plugins or get_plugins()
    method = spec_from(plugins.methods, method, "method")
    check_method_spec(method)
    if method.name not in plugins.methods or plugins.methods.get(method.name) is not method:
        plugins = _with_method(method)
    score = method.load_score()
    for family in sorted(method.families):
        kinds = [kind for kind in FAMILY_KINDS[family] if kind in method.components]
        drawn = drawn_points(method.space_for(family), points, fixed=params)
        at: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for j in range(max(len(kinds), len(drawn)) if kinds and drawn else 0):
            at[kinds[j % len(kinds)]].append(drawn[j % len(drawn)])
        for kind in kinds:
            owner = f"method '{method.name}' on {KIT_MODELS[family]} {kind}"
            prepared = prepare(Benchmark(method=method.name, model=KIT_MODELS[family], components=kind,
                                         n_classes=None if family == "lm" else 3, rates=KIT_RATES,
                                         ref_per_class=3, tune_per_class=0, params=dict(params or {})),
                               plugins=plugins)
            model, components = prepared.model, prepared.components
            values = dict(prepared.plan.params)
            data = Subset(prepared.splits.train, prepared.sets.reference)

            def run(dataset: Dataset, **point: Any) -> dict[str, torch.Tensor]:
                reference = ReferenceSet(dataset, prepared.sets.classes, 4, prepared.device, prepared.task)
                return score(model, components, reference, RunContext.seeded(0, prepared.device), **{**values, **point})

            before = model_state(model, exact=True)
            try:
                scores = run(data)
            except Exception as exc:
                fail(owner, f"scoring raised {type(exc).__name__}: {exc}")
            _check_unchanged(owner, before, model)
            _check_scores(owner, components, scores)
            again = run(data)
            if any(not torch.equal(scores[name], again[name]) for name in scores):
                fail(owner, "gave different scores on a second call with the same seed; draw randomness only "
                            "from context.generator / context.sample_generator.")
            try:
                run(_FailingData(data))
            except Exception:  # expected: the point is what the model looks like afterwards
                pass
            _check_unchanged(owner, before, model, "when scoring raised, ")
            first_batch = Subset(data, range(min(4, len(data))))
            for point in at[kind]:
                where = f"{owner} at {', '.join(f'{key}={value!r}' for key, value in point.items())}"
                try:
                    drawn_scores = run(first_batch, **point)
                except Exception as exc:
                    fail(where, f"scoring raised {type(exc).__name__}: {exc} (the defaults passed; this point "
                                "is drawn from the method's searched space)")
                _check_unchanged(where, before, model)
                _check_scores(where, components, drawn_scores)


def _with_method(method: MethodSpec) -> Plugins:
    """The built-ins plus ``method``, for a spec that is not registered (or not the registered one)."""
    from pxp_bench.hookspecs import hookimpl

    class KitMethod:
        @hookimpl
        def register_methods(self, register) -> None:
            register(method)

    plugins = Plugins(load_external=False, extra=(KitMethod(),))
    if plugins.methods.get(method.name) is not method:
        fail(f"method '{method.name}'", "has the name of a built-in method; choose another name.")
    return plugins


def _check_unchanged(owner: str, before, model, when: str = "") -> None:
    """Fail when ``model`` is not as `model_state` found it ``before`` scoring."""
    if problems := state_changes(before, model):
        fail(owner, when + "; ".join(problems) + ". Undo every change in a `with` block or try / finally.")


def _check_scores(owner: str, components, scores) -> None:
    try:
        check_scores(components, scores)
    except ComponentError as exc:
        fail(owner, str(exc))
    flat = torch.cat([scores[group.name].detach().double().cpu() for group in components.groups])
    if torch.all(flat == flat[0]):
        fail(owner, "gave every component the same score: that ranks nothing.")

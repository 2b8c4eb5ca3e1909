"""`check_optimizer`: the enqueued default first, exactly the trials asked for, within the space, callbacks
called, the same sequence under the same seed, and a stopped trial's reports never steering the search."""

from __future__ import annotations

from pxp_bench.params import Categorical, FloatRange, IntRange, ParamSpace
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.specs import OptimizerSpec
from pxp_bench.testing.kit import fail, imported, spec_from


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
    spec = spec_from(plugins.optimizers, optimizer, "optimizer")
    owner = f"optimizer '{spec.name}'"
    space = dict(space or KIT_SPACE)
    run = imported(owner, spec.load_run)
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
            fail(owner, f"raised {type(exc).__name__}: {exc}")
        finished = [t for t in study.trials if t.state.is_finished()]
        if len(finished) != trials:
            fail(owner, f"ran {len(finished)} trials; asked for {trials}.")
        if finished[0].params != default:
            fail(owner, "did not run the enqueued trial (the method's default) first.")
        if sorted(seen) != [t.number for t in finished]:
            fail(owner, "did not call the callbacks once for every finished trial.")
        for trial in finished:
            if set(trial.params) != set(space) or not all(_inside(space[k], v) for k, v in trial.params.items()):
                fail(owner, f"trial {trial.number} has parameters {trial.params} outside the space.")
        stopped = next((t for t in study.trials if t.number == STOPPED_TRIAL), None)
        if stopped is not None and stopped.state != optuna.trial.TrialState.PRUNED:
            fail(owner, f"recorded the stopped trial {STOPPED_TRIAL} as {stopped.state.name}; a trial whose objective "
                        "raised optuna.TrialPruned has no value: leave it PRUNED.")
        sequences.append([t.params for t in finished])
    if sequences[0] != sequences[1]:
        fail(owner, "proposed another sequence under the same seed; seed every random choice with `seed`.")
    if sequences[0] != sequences[2]:
        fail(owner, "proposed other trials after a stopped trial whose partial reports differed; a stopped trial "
                    "has no value: never read its intermediate values as one (count it as worse than every "
                    "completed trial, or leave it out).")

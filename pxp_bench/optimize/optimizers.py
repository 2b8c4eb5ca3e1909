"""The built-in optimizers. Contract (`pxp_bench.specs.OptimizerSpec.run`):

``run(study, space, objective, *, trials, timeout, seed, callbacks)`` runs at most ``trials`` more
trials of ``objective`` (an Optuna objective: it suggests ``space``'s parameters on the trial it gets
and returns the value to maximise) on ``study``, stopping after ``timeout`` seconds, seeded by
``seed``. Every trial, whoever proposed it, is an Optuna trial in the study's storage, so a study
resumes, and is shared by workers, whatever its optimizer.
"""

from __future__ import annotations

import itertools
import random
from typing import Callable

import optuna

from pxp_bench.params import Categorical, IntRange, ParamSpace

Objective = Callable[[optuna.Trial], float]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _with_sampler(make: Callable[[int], optuna.samplers.BaseSampler]):
    def run(study: optuna.Study, space: ParamSpace, objective: Objective, *, trials: int,
            timeout: float | None, seed: int, callbacks=()) -> None:
        study.sampler = make(seed)
        study.optimize(objective, n_trials=trials, timeout=timeout, callbacks=list(callbacks))

    return run


tpe = _with_sampler(lambda seed: optuna.samplers.TPESampler(seed=seed))
gp = _with_sampler(lambda seed: optuna.samplers.GPSampler(seed=seed))
random_search = _with_sampler(lambda seed: optuna.samplers.RandomSampler(seed=seed))


def _point_key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def grid(study: optuna.Study, space: ParamSpace, objective: Objective, *, trials: int,
         timeout: float | None, seed: int, callbacks=()) -> None:
    """Every point of an all-categorical space once, in an order shuffled by ``seed``.

    Hand-written rather than Optuna's GridSampler so that a point already in the study (trial 0, the
    method's default, or a resumed study's trials) is never evaluated again.
    """
    if not all(isinstance(param, Categorical) for param in space.values()):
        from pxp_bench.errors import ConfigError

        raise ConfigError("the grid optimizer needs an all-categorical space; use optuna-tpe or random.")
    keys = sorted(space)
    points = [dict(zip(keys, values)) for values in itertools.product(*(space[k].choices for k in keys))]
    random.Random(seed).shuffle(points)
    # a waiting (enqueued) trial has no params yet: Optuna keeps them as its "fixed_params"
    seen = {_point_key(t.params) for t in study.get_trials(deepcopy=False) if t.state in FINISHED}
    seen |= {_point_key(t.system_attrs.get("fixed_params", {}))
             for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))}
    remaining = [point for point in points if _point_key(point) not in seen][:max(0, trials - _waiting(study))]
    for point in remaining:
        study.enqueue_trial(point)
    study.sampler = optuna.samplers.RandomSampler(seed=seed)  # never consulted: every trial is enqueued
    study.optimize(objective, n_trials=min(trials, _waiting(study)), timeout=timeout, callbacks=list(callbacks))


def _waiting(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def _nevergrad_parametrization(space: ParamSpace, seed: int):
    import nevergrad as ng
    import numpy as np

    def one(param):
        if isinstance(param, Categorical):
            return ng.p.Choice(list(param.choices))
        scalar = ng.p.Log(lower=param.low, upper=param.high) if param.log else ng.p.Scalar(lower=param.low, upper=param.high)
        return scalar.set_integer_casting() if isinstance(param, IntRange) else scalar

    parametrization = ng.p.Dict(**{key: one(param) for key, param in space.items()})
    parametrization.random_state = np.random.RandomState(seed)
    return parametrization


def nevergrad(study: optuna.Study, space: ParamSpace, objective: Objective, *, trials: int,
              timeout: float | None, seed: int, callbacks=()) -> None:
    """Nevergrad's NGOpt through ask / tell; each candidate runs as an enqueued Optuna trial, and NGOpt is
    first told every finished trial of the study (replay: a rerun resumes)."""
    import time

    import nevergrad as ng

    pending = min(trials, _waiting(study))  # enqueued trials (the method's default) run first
    if pending:
        study.optimize(objective, n_trials=pending, timeout=timeout, callbacks=list(callbacks))
    trials -= pending
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in FINISHED and set(space) <= set(t.params)]
    optimizer = ng.optimizers.NGOpt(parametrization=_nevergrad_parametrization(space, seed),
                                    budget=len(finished) + trials)
    for trial in finished:  # nevergrad minimises
        optimizer.tell(optimizer.parametrization.spawn_child(new_value={k: trial.params[k] for k in space}),
                       -_value(study, trial))
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(trials):
        if deadline is not None and time.monotonic() > deadline:
            break
        candidate = optimizer.ask()
        study.enqueue_trial(dict(candidate.value))
        ran: list[optuna.trial.FrozenTrial] = []
        study.optimize(objective, n_trials=1, callbacks=[*callbacks, lambda _, trial: ran.append(trial)])
        optimizer.tell(candidate, -_value(study, ran[0]))


def _value(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> float:
    """A finished trial's objective. A pruned trial has none: it was stopped as worse than the others, so
    it counts as the worst completed trial. Optuna stores a pruned trial's last partial report as its
    ``value``; that report (an accuracy, or a running sum) would flatter it, so only a completed trial's
    value is its own."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return trial.value
    completed = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return min(completed, default=0.0)

"""A plain random search, drawn by the plugin itself: every point is an enqueued Optuna trial, so the
study's storage, resuming and workers work as with the built-in optimizers."""

from __future__ import annotations

import math
import random
import time

import optuna

from pxp_bench import Categorical, IntRange


def _draw(param, rng: random.Random):
    if isinstance(param, Categorical):
        return rng.choice(list(param.choices))
    if param.log:
        value = math.exp(rng.uniform(math.log(param.low), math.log(param.high)))
    else:
        value = rng.uniform(param.low, param.high)
    return min(param.high, max(param.low, round(value))) if isinstance(param, IntRange) else value


def random_search(study: optuna.Study, space, objective, *, trials: int, timeout: float | None, seed: int,
                  callbacks=()) -> None:
    rng = random.Random(seed)
    deadline = None if timeout is None else time.monotonic() + timeout
    for _ in range(trials):
        if deadline is not None and time.monotonic() > deadline:
            break
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting:  # an enqueued trial (the method's default) runs first
            study.enqueue_trial({key: _draw(param, rng) for key, param in space.items()})
        study.optimize(objective, n_trials=1, callbacks=list(callbacks))

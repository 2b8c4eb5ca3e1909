"""A study: search a method's hyperparameters for pruning, honestly (PROTOCOL section 7).

The objective is A_PR on the *tuning* set, averaged over the study's seeds (each seed its own class
draw, reference and tuning sets); the evaluation set never enters it. The method's default
configuration is trial 0. After the search, the best configuration is evaluated on the evaluation set
of each seed and written as ordinary results with ``variant: optimised``. This module holds the search:
the objective, what a trial reports to the pruner that may stop it, repeats answered from the study,
and the final evaluation. Trials live in an Optuna storage (`pxp_bench.optimize.storage`), so rerunning
the same command resumes, a configuration the study already holds is answered from it, and a study made
for another setting is refused; each trial notes the optimizer that ran it (`pxp_bench.optimize.provenance`).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

from pxp_bench.benchmark import evaluate, evaluate_condition, make_result, score
from pxp_bench.errors import ConfigError
from pxp_bench.evaluate import CurvePoint
from pxp_bench.metrics import curve_metrics
from pxp_bench.optimize.config import StudyConfig, check_config, study_name
from pxp_bench.optimize.provenance import (COMPLETE, FINISHED, OPTIMIZER_ATTR, PRUNED, REPEAT_ATTR, best_trial,
                                           optimizer_record, params_key, provenance)
from pxp_bench.optimize.slots import StudyFull, claim_slots, slot_lock
from pxp_bench.optimize.storage import open_storage, open_study, storage_label, study_identity
from pxp_bench.params import Categorical, IntRange, ParamSpace, searched_space
from pxp_bench.plugins import Plugins, get_plugins, plugin_culprit
from pxp_bench.prepare import Prepared, prepare
from pxp_bench.results import Result, ensure_writable_dir
from pxp_bench.seeds import MAX_SEED
from pxp_bench.specs import OptimizerSpec

WILCOXON_MIN_STEPS = 14
"""SciPy's signed-rank test on 13 or fewer pairs with ties (accuracies often tie) runs a permutation
test that takes seconds per call; from 14 pairs it uses the normal approximation."""


@dataclass
class StudyOutcome:
    study: optuna.Study
    best_params: dict[str, Any]
    best_value: float
    default_value: float | None
    results: list[Result]
    reuse: dict[str, float]
    trials_run: int
    provenance: dict[str, Any]
    """Where the optimised results come from (`provenance`): their ``optimisation`` and ``<study>.provenance.json``."""
    space: ParamSpace = field(repr=False, default_factory=dict)


def _pruner(name: str, rates_per_seed: int) -> optuna.pruners.BasePruner:
    """Stops trials that are clearly worse, from the per-(seed, rate) accuracies a trial reports.

    Both wait for half of the first seed's curve: at low rates every configuration keeps the full accuracy.
    ``median``: the sum of the accuracies so far is below the median of earlier trials' sums at that
    step, once 5 trials have completed (repeats answered from the study count). A sum, not a running
    mean: Optuna's median pruner judges a trial by its best value over the steps so far, and a running
    mean along a falling curve is best at rate 0, equal for every trial.
    ``wilcoxon``: a paired signed-rank test against the best trial's accuracies at the same steps says
    worse (p < 0.1); it waits for at least `WILCOXON_MIN_STEPS` steps.
    """
    warmup = rates_per_seed // 2
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)
    if name == "wilcoxon":
        with warnings.catch_warnings():  # experimental in Optuna; its API is all we use
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=max(warmup, WILCOXON_MIN_STEPS))
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, space: ParamSpace) -> dict[str, Any]:
    """The trial's values for every parameter of ``space``."""
    values = {}
    for key, param in space.items():
        if isinstance(param, Categorical):
            values[key] = trial.suggest_categorical(key, list(param.choices))
        elif isinstance(param, IntRange):
            values[key] = trial.suggest_int(key, param.low, param.high, log=param.log)
        else:
            values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
    return values


def tuning_a_pr(prepared: Prepared, params: dict[str, Any], reuse: bool = True,
               on_rate: Callable[[CurvePoint], None] | None = None) -> float:
    """The objective on one seed: A_PR of ``params``' scores on the tuning set (never the evaluation set)."""
    points = evaluate(prepared, score(prepared, params).scores, "tune", params=params, reuse=reuse, on_rate=on_rate)
    return curve_metrics([p.rate for p in points], [p.correct for p in points], points[0].total)["a_pr"]


class StudyRun:
    """A study in three steps, so that a command can act between them (start workers, show progress):
    making one checks every option, prepares each seed's run and opens the study, writing nothing before
    the checks pass; `search` runs the optimizer; `outcome` picks the best trial and evaluates it."""

    def __init__(self, config: StudyConfig, plugins: Plugins | None = None) -> None:
        plugins = plugins or get_plugins()
        check_config(config)
        self.config = config
        self.optimizer: OptimizerSpec = plugins.optimizers.get(config.optimizer)
        self.optimizer_record = optimizer_record(plugins, config.optimizer)
        self.proposer = plugin_culprit(plugins, f"optimizer '{config.optimizer}'", self.optimizer_record["plugin"])
        self.prepared = {seed: prepare(dataclasses.replace(config.bench, seed=seed), plugins=plugins)
                         for seed in config.seeds}
        self.first = first = self.prepared[config.seeds[0]]
        method, family = first.plan.method, first.plan.model.family
        given = set(config.bench.params) | set(config.bench.param_texts)  # fixed by the user: not searched
        self.space = {key: param for key, param in searched_space(method.space_for(family)).items()
                      if key not in given}
        if not self.space:
            raise ConfigError(f"method '{method.name}' has no searched parameters left on a {family} (none declared, "
                              "or all fixed with --param / --params); nothing to optimise.")
        self.name = name = study_name(config, first.plan.components, method.name)
        ensure_writable_dir(config.out)  # the results go there, whatever the storage
        self.journal = None if config.storage else Path(config.out) / f"{name}.journal"
        self.storage = storage = open_storage(config.storage, self.journal, config.heartbeat_s, config.grace_s)
        self.study = study = open_study(storage, name, study_identity(first, self.space, config.seeds, config.pruner))
        study.pruner = _pruner(config.pruner if self.optimizer.prunes else "none", len(first.rates))
        if not study.trials:
            study.enqueue_trial({key: first.plan.params[key] for key in self.space}, user_attrs={"default": True})
        self.trials_run = 0

    def finished(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=FINISHED))

    def where(self) -> str:
        """Where the study's trials are kept, for messages."""
        return str(self.journal) if self.journal else f"study '{self.name}' of {storage_label(self.config.storage)}"

    def search(self, on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None) -> None:
        """Run the optimizer until the study holds ``trials`` finished trials (or ``timeout`` passes)."""
        config, study, space, first = self.config, self.study, self.space, self.first
        last_step = len(config.seeds) * len(first.rates) - 1

        def objective(trial: optuna.Trial) -> float:
            trial.set_user_attr(OPTIMIZER_ATTR, self.optimizer_record)  # who ran it, kept when resumed with another
            suggested = self.proposal(trial)
            earlier = _earlier_trial(study, suggested)
            if earlier is not None:
                return _answer_from(trial, earlier)
            params = {**first.plan.params, **suggested}
            accuracies: dict[int, float] = {}  # per (seed, rate) step: seed-major, rates ascending

            def reporter(seed_index: int) -> Callable[[CurvePoint], None]:
                def report(point: CurvePoint) -> None:
                    step = seed_index * len(first.rates) + first.rates.index(point.rate)
                    accuracies[step] = point.accuracy  # keyed: a curve retried after out-of-memory counts once
                    trial.report(math.fsum(accuracies[s] for s in range(step + 1)) if config.pruner == "median"
                                 else point.accuracy, step)
                    if step < last_step and trial.should_prune():
                        raise optuna.TrialPruned()

                return report

            return statistics.fmean(tuning_a_pr(self.prepared[seed], params, config.reuse, on_rate=reporter(index))
                                    for index, seed in enumerate(config.seeds))

        self.trials_run = max(0, config.trials - self.finished())
        # workers sharing the study stop together at --trials finished trials: each claims a slot before it
        # starts a trial (`pxp_bench.optimize.slots`), and stops once the study holds its finished trials
        callbacks = [optuna.study.MaxTrialsCallback(config.trials, states=FINISHED)]
        if on_trial is not None:
            callbacks.append(on_trial)
        if self.trials_run:  # a worker's seed is offset; numpy takes seeds up to MAX_SEED, so it wraps
            deadline = None if config.timeout is None else time.monotonic() + config.timeout
            restore = claim_slots(study, config.trials, slot_lock(self.storage, self.name, self.journal), deadline)
            try:
                self.optimizer.load_run()(study, space, objective, trials=self.trials_run, timeout=config.timeout,
                                          seed=(config.seeds[0] + 1000 * config.worker) % (MAX_SEED + 1),
                                          callbacks=callbacks)
            except StudyFull:
                pass
            finally:
                restore()

    def proposal(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's parameters, refused unless inside the searched space: an optimizer that proposes
        through ``enqueue_trial`` or fixed distributions can leave it (Optuna only warns then), and its
        configuration would be chosen and written, then refused by ``pxp-bench run --params``."""
        with warnings.catch_warnings():  # Optuna's warning on an out-of-range fixed value: refused below
            warnings.filterwarnings("ignore", message="Fixed parameter")
            try:
                values = suggest(trial, self.space)
            except ValueError as exc:  # a fixed value Optuna cannot place, e.g. a choice not among the choices
                raise self._outside(str(exc).rstrip(".")) from None
        self.check_params(values)
        return values

    def check_params(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            try:
                self.space[key].validate(value)
            except ValueError as exc:
                raise self._outside(f"{key}={value!r}: {exc}") from None

    def _outside(self, what: str) -> ConfigError:
        return ConfigError(f"{self.proposer} proposed a configuration outside the searched space of method "
                           f"'{self.first.plan.method.name}' ({what}); fix or uninstall that optimizer, or choose "
                           "another with --optimizer.")

    def outcome(self, evaluate_best: bool = True) -> StudyOutcome:
        """The best completed trial; with ``evaluate_best``, evaluated on every seed's evaluation set."""
        config, study, space, first = self.config, self.study, self.space, self.first
        completed = study.get_trials(deepcopy=False, states=(COMPLETE,))
        if not completed:
            raise ConfigError(f"study '{self.name}' has no completed trial yet; raise --trials or --timeout.")
        best = best_trial(completed)
        self.check_params({key: value for key, value in best.params.items() if key in space})  # added, not run
        best_params = {**first.plan.params, **{k: v for k, v in best.params.items() if k in space}}
        default = next((t for t in completed if t.user_attrs.get("default")), None)
        found = provenance(study, best, self.name, config)
        results = ([_optimised_result(self.prepared[seed], best_params, found) for seed in config.seeds]
                   if evaluate_best else [])
        memos = [p.memos["tune"] for p in self.prepared.values() if "tune" in p.memos]
        reuse = {"hits": sum(m.hits for m in memos), "evaluations": sum(m.misses for m in memos)}
        reuse["hit_rate"] = reuse["hits"] / max(1, reuse["hits"] + reuse["evaluations"])
        return StudyOutcome(study, best_params, best.value, default.value if default else None, results, reuse,
                            self.trials_run, found, space)


def run_study(config: StudyConfig, *, plugins: Plugins | None = None,
              on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
              evaluate_best: bool = True) -> StudyOutcome:
    """Search, then (``evaluate_best``) evaluate the best configuration on every seed's evaluation set."""
    run = StudyRun(config, plugins)
    run.search(on_trial)
    return run.outcome(evaluate_best)


def _earlier_trial(study: optuna.Study, params: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
    """A finished trial with these ``params``: the first completed one (the one evaluated, not a repeat of
    it), else the first stopped one; None when the configuration is new."""
    key = params_key(params)
    same = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if params_key(t.params) == key]
    return min(same, key=lambda t: (t.state != COMPLETE, t.number), default=None)


def _answer_from(trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> float:
    """Answer a configuration the study already holds (a resumed sampler, or TPE repeating a categorical
    point) from ``earlier`` instead of evaluating it again: its reports, so that the pruners see what an
    evaluation would show, then its value. A repeat of a stopped trial is stopped at once: its curve
    would be the same one that was judged worse, and a stopped trial has no value to give."""
    trial.set_user_attr(REPEAT_ATTR, earlier.number)
    for step, value in sorted(earlier.intermediate_values.items()):
        trial.report(value, step)
    if earlier.state == PRUNED:
        raise optuna.TrialPruned()
    return earlier.value


def _optimised_result(prepared: Prepared, params: dict[str, Any], found: dict[str, Any]) -> Result:
    """The best configuration on this seed's evaluation set: an ordinary result, variant ``optimised``."""
    clock = time.perf_counter()
    scored = score(prepared, params)
    curve = evaluate_condition(prepared, scored.scores, "eval", params=params)
    timings = {**prepared.timings, "score_and_evaluate": round(time.perf_counter() - clock, 4)}
    result = make_result(prepared, {"method": prepared.plan.method.name, "variant": "optimised", "params": params},
                         curve.points, scored.scores, timings,
                         {"excluded_attention": list(prepared.components.excluded), **scored.diagnostics}, curve)
    result.optimisation = dict(found)
    return result

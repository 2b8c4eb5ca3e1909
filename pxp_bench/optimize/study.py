"""A study: search a method's hyperparameters for pruning, honestly (PROTOCOL section 7).

The objective is A_PR on the *tuning* set, averaged over the study's seeds (each seed its own class
draw, reference and tuning sets); the evaluation set never enters it. The method's default
configuration is trial 0. After the search, the best configuration is evaluated on the evaluation set
of each seed and written as ordinary results with ``variant: optimised``. Trials live in an Optuna
storage (a journal file by default, or an RDB URL for workers on several machines), so rerunning the
same command resumes, a configuration the study already holds is answered from it, and a study made for
another setting is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

from pxp_bench.benchmark import Prepared, evaluate, make_result, prepare, score
from pxp_bench.errors import ConfigError
from pxp_bench.evaluate import CurvePoint
from pxp_bench.metrics import curve_metrics
from pxp_bench.optimize.slots import StudyFull, claim_slots, slot_lock
from pxp_bench.params import Categorical, IntRange, ParamSpace, searched_space
from pxp_bench.plan import MAX_SEED, Benchmark, check_seed, file_safe_model
from pxp_bench.plugins import Plugins, get_plugins
from pxp_bench.results import Result, ensure_writable_dir
from pxp_bench.specs import OptimizerSpec

IDENTITY_ATTR = "pxp_bench_identity"
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
PRUNERS = ("median", "wilcoxon", "none")
REPORTS = "accuracy per (seed, rate) step"
"""What a trial reports to the pruner (part of a study's identity: a study whose trials reported
otherwise cannot be resumed with this pruner)."""
WILCOXON_MIN_STEPS = 14
"""SciPy's signed-rank test on 13 or fewer pairs with ties (accuracies often tie) runs a permutation
test that takes seconds per call; from 14 pairs it uses the normal approximation."""
RETRIES = 3
"""A trial whose worker died (silent past the grace period) is retried at most this often."""
SCHEMA_ATTEMPTS = 3
"""Workers that open a fresh database at the same moment race to create Optuna's tables (a unique
violation in PostgreSQL's catalogue); the loser opens the storage again, the tables then exist."""
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,199}")
"""A study name names its files in --out (journal, best parameters, provenance, plot): never a path."""
COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)
FINISHED = (COMPLETE, PRUNED)
REPEAT_ATTR = "repeat_of"
"""User attribute of a trial answered from an earlier trial with the same parameters: that trial's number."""


@dataclass
class StudyConfig:
    """What a study runs: a `Benchmark` template (its seed is replaced by each of ``seeds``) and the search."""

    bench: Benchmark
    seeds: tuple[int, ...] = (0,)
    optimizer: str = "optuna-tpe"
    trials: int = 50
    timeout: float | None = None
    storage: str | None = None
    """None: a journal file ``<out>/<study>.journal``; or an RDB URL (``postgresql://...``, ``sqlite:///...``)."""
    study: str | None = None
    out: Path = Path("results")
    pruner: str = "wilcoxon"
    """How clearly worse trials are stopped mid-curve (`_pruner`): ``median``, ``wilcoxon`` or ``none``."""
    heartbeat_s: int = 20
    grace_s: int = 60
    """A running trial's process beats every ``heartbeat_s`` (journal or RDB); a running trial silent for
    ``grace_s`` (its process died) is failed and retried by the next trial started on the study."""
    reuse: bool = True
    """Evaluate each pruned set once per seed (exact); off only to measure what it saves."""
    worker: int = 0
    """Which of several local workers this is (``--jobs``): offsets the sampler's seed so that workers
    do not propose the same sequence."""


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


def study_name(config: StudyConfig, plan_components: str, method: str) -> str:
    """``--study``, or one made of the model (each run of other characters a ``-``), components, method and
    seeds; refused unless a plain name."""
    seeds = "-".join(map(str, config.seeds))
    made = config.study is None
    name = f"{file_safe_model(config.bench.model)}_{plan_components}_{method}_seeds{seeds}" if made else config.study
    if not STUDY_NAME.fullmatch(name):
        made = " (made from the model, components, method and seeds; give --study)" if made else ""
        raise ConfigError(f"study name '{name}'{made} is not a plain name: it names the study's files in --out, so "
                          "use 1 to 200 letters, digits and _ . + = , @ - (a letter, digit or _ first), no path.")
    return name


def _check(config: StudyConfig) -> None:
    if isinstance(config.trials, bool) or not isinstance(config.trials, int) or config.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {config.trials}.")
    if config.timeout is not None and not (math.isfinite(config.timeout) and config.timeout > 0):
        raise ConfigError(f"--timeout must be a positive, finite number of seconds, got {config.timeout}.")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(f"--seeds must be distinct integers, got {list(config.seeds)}.")
    for seed in config.seeds:
        check_seed(seed, "--seeds")
    if config.pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got '{config.pruner}'.")
    if config.bench.tune_per_class < 1:
        raise ConfigError("a study needs a tuning set: --tune-per-class must be at least 1.")
    if config.bench.scores_file is not None:
        raise ConfigError("a study scores every configuration itself; drop --scores.")
    if config.storage is not None and config.storage.split(":", 1)[0].split("+", 1)[0] not in RDB_SCHEMES:
        raise ConfigError(f"--storage '{config.storage}' is not a database URL; use postgresql://USER@HOST/DB, "
                          "sqlite:///FILE.db, or leave it out for a journal file in --out.")


def _identity(config: StudyConfig, prepared: Prepared, space: ParamSpace) -> dict[str, Any]:
    """What a study is about; a stored study with another identity is refused."""
    bench = prepared.bench
    return {
        "method": prepared.plan.method.name, "model": prepared.plan.model.name, "weights": prepared.loaded.weights,
        "dataset": prepared.plan.dataset.name, "components": prepared.plan.components,
        "space": {key: param.describe() for key, param in sorted(space.items())},
        "fixed": {key: value for key, value in sorted(prepared.plan.params.items()) if key not in space},
        "seeds": list(config.seeds), "classes": bench.n_classes, "ref_per_class": bench.ref_per_class,
        "tune_per_class": bench.tune_per_class, "rates": list(prepared.rates),
        "pruner": config.pruner, "reports": REPORTS,
    }


def open_storage(url: str | None, default_path: Path, heartbeat_s: int = 20, grace_s: int = 60):
    """A journal file (safe for several local processes; refused when damaged) or an RDB, either with
    heartbeats: a trial whose process died is failed and retried (`RETRIES`)."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from pxp_bench.optimize.journal import HeartbeatJournalStorage, check_journal

    try:
        if url is None:
            check_journal(default_path)
            return HeartbeatJournalStorage(default_path, heartbeat_s, grace_s, RETRIES)
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():  # Optuna marks its heartbeat experimental; it is what we rely on
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    retry = RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
                    return RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                      heartbeat_stale_trial_callback=retry)
            except Exception as exc:  # workers racing to create a fresh database's tables: one loses
                if "IntegrityError" not in type(exc).__name__ or attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ConfigError:
        raise
    except Exception as exc:  # SQLAlchemy / driver / file errors: one line
        reason = (str(exc).splitlines() or [""])[0].rstrip(".")
        raise ConfigError(f"cannot open the study storage {url or default_path}: {type(exc).__name__}: {reason}. "
                          "Check the URL, the server and its driver (for PostgreSQL: pip install "
                          "'pxp-bench[postgres]').") from None


def _open_study(storage, name: str, identity: dict[str, Any]) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None:
        study.set_user_attr(IDENTITY_ATTR, identity)
    elif stored != identity:
        differing = sorted(key for key in set(stored) | set(identity) if stored.get(key) != identity.get(key))
        raise ConfigError(f"study '{name}' was created for another setting (differs in {', '.join(differing)}). "
                          "Use another --study name, or the original options.")
    return study


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
    points = evaluate(prepared, score(prepared, params).scores, "tune", reuse=reuse, on_rate=on_rate)
    return curve_metrics([p.rate for p in points], [p.correct for p in points], points[0].total)["a_pr"]


class StudyRun:
    """A study in three steps, so that a command can act between them (start workers, show progress):
    making one checks every option, prepares each seed's run and opens the study, writing nothing before
    the checks pass; `search` runs the optimizer; `outcome` picks the best trial and evaluates it."""

    def __init__(self, config: StudyConfig, plugins: Plugins | None = None) -> None:
        plugins = plugins or get_plugins()
        _check(config)
        self.config = config
        self.optimizer: OptimizerSpec = plugins.optimizers.get(config.optimizer)
        owner = plugins.optimizers.owner(config.optimizer)
        info = plugins.infos.get(owner)
        self.proposer = f"optimizer '{config.optimizer}' (plugin '{owner}'" + (
            f" from {info.distribution})" if info is not None else ")")
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
        self.study = study = _open_study(storage, name, _identity(config, first, self.space))
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


def _params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def _earlier_trial(study: optuna.Study, params: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
    """A finished trial with these ``params``: the first completed one (the one evaluated, not a repeat of
    it), else the first stopped one; None when the configuration is new."""
    key = _params_key(params)
    same = [t for t in study.get_trials(deepcopy=False, states=FINISHED) if _params_key(t.params) == key]
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


def best_trial(completed: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """The completed trial with the highest value, the earliest of equals: never a repeat (its earlier
    trial ties with it), and the same on every storage (an RDB orders ties arbitrarily)."""
    return max(sorted(completed, key=lambda t: t.number), key=lambda t: t.value)


def trial_counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How trials ended: ``completed``, ``stopped`` (pruned mid-curve: no value), ``failed``, and among the
    finished ones the ``distinct`` configurations and the ``repeats`` answered from an earlier trial."""
    finished = [t for t in trials if t.state in FINISHED]
    return {"completed": sum(t.state == COMPLETE for t in trials), "stopped": sum(t.state == PRUNED for t in trials),
            "failed": sum(t.state == FAIL for t in trials), "distinct": len({_params_key(t.params) for t in finished}),
            "repeats": sum(REPEAT_ATTR in t.user_attrs for t in finished)}


def storage_label(url: str | None) -> str:
    """``journal``, or the RDB URL without its password (in the user part or the query)."""
    if url is None:
        return "journal"
    from sqlalchemy.engine import make_url

    return make_url(url)._replace(password=None).difference_update_query(["password"]).render_as_string(
        hide_password=False)


def provenance(study: optuna.Study, best: optuna.trial.FrozenTrial, name: str, config: StudyConfig) -> dict[str, Any]:
    """The study behind an optimised result: its best trial, how its trials ended and what it cost.

    Times come from the trials' timestamps in the storage, so they hold for a resumed study and for
    several workers: ``study_wall_s`` runs from the earliest finished trial's start to the latest one's
    end, ``study_trial_s`` adds up the finished trials' durations (more than the wall time with workers).
    """
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    counts = trial_counts(trials)
    wall = max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    return {
        "study": name, "trial": best.number, "optimizer": config.optimizer, "seeds": list(config.seeds),
        "trials_completed": counts["completed"], "trials_stopped": counts["stopped"],
        "distinct_configurations": counts["distinct"], "tuning_a_pr": best.value,
        "study_wall_s": round(wall.total_seconds(), 1),
        "study_trial_s": round(math.fsum(t.duration.total_seconds() for t in finished), 1),
        "storage": storage_label(config.storage),
    }


def _optimised_result(prepared: Prepared, params: dict[str, Any], found: dict[str, Any]) -> Result:
    """The best configuration on this seed's evaluation set: an ordinary result, variant ``optimised``."""
    clock = time.perf_counter()
    scored = score(prepared, params)
    points = evaluate(prepared, scored.scores, "eval")
    timings = {**prepared.timings, "score_and_evaluate": round(time.perf_counter() - clock, 4)}
    result = make_result(prepared, {"method": prepared.plan.method.name, "variant": "optimised", "params": params},
                         points, scored.scores, timings,
                         {"excluded_attention": list(prepared.components.excluded), **scored.diagnostics})
    result.optimisation = dict(found)
    return result


def config_to_json(config: StudyConfig) -> str:
    """``config`` as JSON, for a worker process (`pxp_bench.optimize.worker`)."""
    return json.dumps(dataclasses.asdict(config), default=str)


def config_from_json(text: str) -> StudyConfig:
    values = json.loads(text)
    bench = values.pop("bench")
    bench["rates"] = tuple(bench["rates"])
    bench["data_root"] = Path(bench["data_root"]) if bench["data_root"] else None
    return StudyConfig(Benchmark(**bench), **{**values, "seeds": tuple(values["seeds"]), "out": Path(values["out"])})


def best_params_json(outcome: StudyOutcome) -> str:
    """The best configuration as a ``--params`` file for ``pxp-bench run``."""
    return json.dumps(outcome.best_params, indent=2, sort_keys=True) + "\n"


def provenance_json(outcome: StudyOutcome) -> str:
    """The study's provenance as ``<study>.provenance.json``, beside ``<study>.best.json`` (a suite reads it)."""
    return json.dumps(outcome.provenance, indent=2, sort_keys=True) + "\n"

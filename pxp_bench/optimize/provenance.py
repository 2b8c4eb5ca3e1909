"""A study's record, read from its trials in the storage: how they ended (`trial_counts`), the best one
(`best_trial`), which optimizers ran them (`optimizers_ran`, from what each trial notes of its
optimizer), and the provenance an optimised result carries (`provenance`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import optuna

from pxp_bench.optimize.storage import storage_label

if TYPE_CHECKING:
    from pxp_bench.optimize.config import StudyConfig
    from pxp_bench.plugins import Plugins

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)
FINISHED = (COMPLETE, PRUNED)
REPEAT_ATTR = "repeat_of"
"""User attribute of a trial answered from an earlier trial with the same parameters: that trial's number."""
OPTIMIZER_ATTR = "optimizer"
"""User attribute of a trial: the optimizer that ran it, with its plugin, distribution and version
(`optimizer_record`); a study resumed with another optimizer thus keeps who ran which trial."""


def params_key(params: dict[str, Any]) -> tuple:
    """A configuration as a hashable key: equal for equal parameters, whatever their order."""
    return tuple(sorted(params.items()))


def best_trial(completed: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """The completed trial with the highest value, the earliest of equals: never a repeat (its earlier
    trial ties with it), and the same on every storage (an RDB orders ties arbitrarily)."""
    return max(sorted(completed, key=lambda t: t.number), key=lambda t: t.value)


def trial_counts(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    """How trials ended: ``completed``, ``stopped`` (pruned mid-curve: no value), ``failed``, and among the
    finished ones the ``distinct`` configurations and the ``repeats`` answered from an earlier trial."""
    finished = [t for t in trials if t.state in FINISHED]
    return {"completed": sum(t.state == COMPLETE for t in trials), "stopped": sum(t.state == PRUNED for t in trials),
            "failed": sum(t.state == FAIL for t in trials), "distinct": len({params_key(t.params) for t in finished}),
            "repeats": sum(REPEAT_ATTR in t.user_attrs for t in finished)}


def optimizer_record(plugins: Plugins, name: str) -> dict[str, str]:
    """The optimizer ``name`` as a trial notes it (`OPTIMIZER_ATTR`): with the plugin that registered it,
    that plugin's distribution and version."""
    owner = plugins.optimizers.owner(name)
    info = plugins.infos[owner]
    return {"optimizer": name, "plugin": owner, "distribution": info.distribution, "version": info.version}


def optimizers_ran(trials: list[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """Every optimizer that ran finished trials of the study, in the order of its first one, each with its
    plugin, distribution, version and how many finished ``trials`` it ran. Trials that note no optimizer
    (run by a pxp-bench that did not note it) count under ``optimizer`` None."""
    runs: dict[tuple, dict[str, Any]] = {}
    for trial in sorted((t for t in trials if t.state in FINISHED), key=lambda t: t.number):
        record = trial.user_attrs.get(OPTIMIZER_ATTR) or {"optimizer": None}
        runs.setdefault(params_key(record), {**record, "trials": 0})["trials"] += 1
    return list(runs.values())


def provenance(study: optuna.Study, best: optuna.trial.FrozenTrial, name: str, config: StudyConfig) -> dict[str, Any]:
    """The study behind an optimised result: its best trial, how its trials ended, which optimizers ran
    them (``optimizers``; ``optimizer`` is the one this command ran) and what it cost.

    Times come from the trials' timestamps in the storage, so they hold for a resumed study and for
    several workers: ``study_wall_s`` runs from the earliest finished trial's start to the latest one's
    end, ``study_trial_s`` adds up the finished trials' durations (more than the wall time with workers).
    """
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in FINISHED]
    counts = trial_counts(trials)
    wall = max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
    return {
        "study": name, "trial": best.number, "optimizer": config.optimizer, "optimizers": optimizers_ran(trials),
        "seeds": list(config.seeds), "trials_completed": counts["completed"], "trials_stopped": counts["stopped"],
        "distinct_configurations": counts["distinct"], "tuning_a_pr": best.value,
        "study_wall_s": round(wall.total_seconds(), 1),
        "study_trial_s": round(math.fsum(t.duration.total_seconds() for t in finished), 1),
        "storage": storage_label(config.storage),
    }

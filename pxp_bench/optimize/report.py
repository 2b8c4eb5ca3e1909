"""What a study leaves behind besides its results: the best parameters (``<study>.best.json``), its
provenance (``<study>.provenance.json``), what its trials did and which optimizers ran them, and the
optimisation history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from pxp_bench.optimize.provenance import COMPLETE, PRUNED, REPEAT_ATTR, optimizers_ran, trial_counts
from pxp_bench.optimize.study import StudyOutcome
from pxp_bench.results import atomic_write_bytes


def best_params_json(outcome: StudyOutcome) -> str:
    """The best configuration as a ``--params`` file for ``pxp-bench run``."""
    return json.dumps(outcome.best_params, indent=2, sort_keys=True) + "\n"


def provenance_json(outcome: StudyOutcome) -> str:
    """The study's provenance as ``<study>.provenance.json``, beside ``<study>.best.json`` (a suite reads it)."""
    return json.dumps(outcome.provenance, indent=2, sort_keys=True) + "\n"


def best_trials(study: optuna.Study, n: int = 5) -> list[optuna.trial.FrozenTrial]:
    """The ``n`` best completed trials, best first (the earlier of equals). A stopped trial has no value,
    though Optuna keeps its last report as one, and a repeat is its earlier trial's configuration again."""
    evaluated = [t for t in study.get_trials(deepcopy=False, states=(COMPLETE,)) if REPEAT_ATTR not in t.user_attrs]
    return sorted(evaluated, key=lambda t: (-t.value, t.number))[:n]


def trials_summary(study: optuna.Study) -> str:
    """One line on how the study's trials ended and which optimizers ran them."""
    trials = study.get_trials(deepcopy=False)
    counts = trial_counts(trials)
    return (f"trials: {counts['completed']} completed, {counts['stopped']} stopped mid-curve (no value), "
            f"{counts['failed']} failed; {counts['distinct']} distinct configurations evaluated; "
            f"repeated proposals answered from earlier trials: {counts['repeats']}; "
            f"run by {optimizers_text(optimizers_ran(trials))}")


def optimizers_text(runs: list[dict[str, Any]]) -> str:
    """The optimizers of `optimizers_ran`, in order, each with its finished trials."""
    return ", then ".join(f"{run['optimizer'] or 'an optimizer not recorded'} ({run['trials']} finished "
                          f"trial{'' if run['trials'] == 1 else 's'})" for run in runs) or "no optimizer yet"


def history_plot(study: optuna.Study, path: Path) -> None:
    """Each completed trial's tuning A_PR and the best so far, as a PNG; stopped trials, which have no
    value, are marked on the trial axis.

    Drawn with matplotlib directly: Optuna's own matplotlib plots are marked experimental and warn.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = study.get_trials(deepcopy=False, states=(COMPLETE,))
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    best = [max(values[: i + 1]) for i in range(len(values))]
    stopped = [t.number for t in study.get_trials(deepcopy=False, states=(PRUNED,))]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.scatter(numbers, values, s=14, label="trial")
    axes.step(numbers, best, where="post", color="tab:red", label="best so far")
    if stopped:  # at the bottom of the axes, in axes coordinates: no value to place them at
        axes.scatter(stopped, [0.03] * len(stopped), marker="x", s=14, color="tab:gray",
                     transform=axes.get_xaxis_transform(), label="stopped (no value)")
    axes.set_xlabel("trial")
    axes.set_ylabel("A_PR on the tuning set")
    axes.set_title(study.study_name, fontsize=9)
    axes.legend(loc="best")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())

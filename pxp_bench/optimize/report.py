"""What a study leaves behind besides its results: the best parameters and the optimisation history."""

from __future__ import annotations

from pathlib import Path

import optuna

from pxp_bench.results import atomic_write_bytes


def history_plot(study: optuna.Study, path: Path) -> None:
    """Each finished trial's tuning A_PR and the best so far, as a PNG.

    Drawn with matplotlib directly: Optuna's own matplotlib plots are marked experimental and warn.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    numbers = [t.number for t in trials]
    values = [t.value for t in trials]
    best = [max(values[: i + 1]) for i in range(len(values))]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=120)
    axes.scatter(numbers, values, s=14, label="trial")
    axes.step(numbers, best, where="post", color="tab:red", label="best so far")
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

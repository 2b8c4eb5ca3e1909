"""Accuracy-vs-sparsity plots as PNG bytes: a table's rows (mean with a ± SEM band over seeds), or the
curves of any result files overlaid.

Drawn on a bare `Figure` with the Agg canvas (no pyplot state) under matplotlib's default style (no
user matplotlibrc), with a fixed size and resolution and no ``Software`` version stamp, so that the
same results give the same bytes with the same matplotlib.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

from pxp_bench.errors import ConfigError
from pxp_bench.records.load import curve_problem
from pxp_bench.leaderboard.tables import Table
from pxp_bench.results import atomic_write_bytes, ensure_writable_dir, read_result
from pxp_bench.verdicts.summary import SummaryRow

FIGSIZE = (8.0, 4.5)
DPI = 100
"""A plot is FIGSIZE * DPI = 800 x 450 pixels."""
LINE_STYLES = ("-", "--", ":", "-.")
"""After the ten default colours, curves differ by line style too."""


def _draw(title: str, ylabel: str, curves: Sequence[tuple[str, Any, Any, Any]]) -> bytes:
    """PNG bytes of ``curves`` (label, rates, accuracy, (lower, upper) band or None), legend sorted by label."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with style.context("default"):
        figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        ordered = sorted(curves, key=lambda curve: curve[0])
        for index, (label, rates, accuracy, band) in enumerate(ordered):
            colour, dashes = f"C{index % 10}", LINE_STYLES[index // 10 % len(LINE_STYLES)]
            axes.plot(rates, accuracy, color=colour, linestyle=dashes, marker="o", markersize=2.5,
                      linewidth=1.4, label=label)
            if band is not None:
                axes.fill_between(rates, band[0], band[1], color=colour, alpha=0.18, linewidth=0)
        axes.set(xlabel="pruning rate (fraction of components pruned)", ylabel=ylabel, ylim=(0.0, 1.02),
                 xlim=(0.0, max(0.05, *(max(curve[1]) for curve in curves))))
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        figure.legend(loc="outside right upper", fontsize=7, ncols=2 if len(curves) > 16 else 1)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def table_png(table: Table) -> bytes:
    """Mean top-1 accuracy against pruning rate for each row of ``table``; the shaded band is the 95 %
    bootstrap interval at each rate (`pxp_bench.verdicts`), or for a row without per-sample outcomes ± one
    standard error of the mean over its seeds (none for a single seed), as the paper shades it."""
    curves = []
    for index, (label, row) in enumerate(zip(table.labels(), table.rows)):
        rates, accuracy, sem = row.curve()
        band = table.verdict.curve_band(index)
        if band is None and sem is not None:
            band = (accuracy - sem, accuracy + sem)
        curves.append((label, rates, accuracy, band))
    return _draw(table.title, "top-1 accuracy (mean, 95 % interval)", curves)


def summary_png(rows: Sequence[SummaryRow]) -> bytes:
    """Each method's probability of improvement over LRP-epsilon across settings, with its 95 % interval,
    highest first; the dashed line at 0.5 is no difference."""
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = sorted((row for row in rows if row.improvement is not None), key=lambda row: row.improvement.value)
    with style.context("default"):
        figure = Figure(figsize=(FIGSIZE[0], max(2.5, 0.35 * len(shown) + 1.2)), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        for position, row in enumerate(shown):
            estimate = row.improvement
            axes.errorbar(estimate.value, position, xerr=[[estimate.value - estimate.low], [estimate.high - estimate.value]],
                          fmt="o", color="C0", capsize=3, markersize=4)
        axes.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        axes.set_yticks(range(len(shown)), [f"{row.label} ({row.improvement_settings})" for row in shown], fontsize=8)
        axes.set(xlabel="probability of improvement over lrp (epsilon), mean over settings (95 % interval)",
                 xlim=(0.0, 1.0))
        axes.grid(alpha=0.3, axis="x")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _setting(result: dict[str, Any]) -> str:
    return f"{result['model']} · {result['components']} · {result['dataset']}"


def _run(result: dict[str, Any]) -> str:
    return f"{result['method']} ({result['variant']}), seed {result['seed']}"


def curves_png(results: Sequence[dict[str, Any]], names: Sequence[str] | None = None) -> bytes:
    """The curves of ``results`` overlaid, one line each, labelled by method, variant and seed, and by
    model, components and dataset unless all share them (then the title says them); by ``names`` (their
    file names) too where two labels would be the same."""
    import numpy as np

    settings = {_setting(result) for result in results}
    shared = len(settings) == 1
    labels = [_run(result) if shared else f"{_setting(result)}: {_run(result)}" for result in results]
    if names is not None:
        labels = [f"{label} [{name}]" if labels.count(label) > 1 else label for label, name in zip(labels, names)]
    curves = [(label, np.array([p["rate"] for p in result["curve"]], dtype=float),
               np.array([p["accuracy"] for p in result["curve"]], dtype=float), None)
              for label, result in zip(labels, results)]
    title = settings.pop() if shared else "top-1 accuracy against pruning rate"
    return _draw(title, "top-1 accuracy", curves)


def write_png(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; a path that cannot take it is a `ConfigError`."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}). Choose another --out.") from None
    return path


def read_curves(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The results in ``paths``; a file that is not a result with a drawable curve is a `ConfigError`
    naming it."""
    results = []
    for path in map(Path, paths):
        result = read_result(path)
        problem = curve_problem(result)
        if problem:
            raise ConfigError(f"cannot plot {path}: {problem}")
        results.append(result)
    return results


def plot_result_files(paths: Sequence[Path], out: Path) -> Path:
    """Overlay the curves of the result files ``paths`` in the PNG ``out`` (its folder is created).

    Only ``.png``: the plots are byte-stable PNGs, and bytes of one format under another's name would
    mislead every program that opens them."""
    if Path(out).suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: plots are PNG images; give a file name ending in .png.")
    if not paths:
        raise ConfigError("give at least one result JSON file to plot.")
    ensure_writable_dir(Path(out).parent)
    curves = curves_png(read_curves(paths), [Path(path).name for path in paths])
    return write_png(Path(out), curves)

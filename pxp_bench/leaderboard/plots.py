"""Accuracy-vs-sparsity plots as PNG bytes: a table's rows (mean with a ± SEM band over seeds), or the
curves of any result files overlaid; and layer profiles: per method, a heatmap of the fraction of each layer
pruned at each rate.

Drawn on a bare `Figure` with the Agg canvas (no pyplot state) under matplotlib's default style (no
user matplotlibrc), with a fixed size and resolution and no ``Software`` version stamp, so that the
same results give the same bytes with the same matplotlib.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pxp_bench.collapse import EMPTY
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


PROFILE_COLUMNS = 4
"""A layer profile has at most this many panels a row."""
PROFILE_CMAP = "viridis"
LABEL_CHARS = 24
"""Layer names longer than this are shortened in the middle (the end tells the layers apart)."""


@dataclass(frozen=True)
class ProfilePanel:
    """One panel of a layer profile: a method configuration's pruned fraction per layer (rows, forward
    order) and rate (columns), averaged over its records, and where its layers are empty."""

    label: str
    seeds: tuple[int, ...]
    layers: tuple[str, ...]
    rates: tuple[float, ...]
    fractions: Any
    """(layers, rates) array: the mean over the records of the fraction of each layer pruned at each rate."""
    collapsed: Any
    """(layers, rates) array: in how many of the records the layer is empty (pruned entirely) there."""

    @property
    def records(self) -> int:
        return len(self.seeds)

    def caption(self) -> str:
        if self.records == 1:
            return f"{self.label}\nseed {self.seeds[0]}"
        if len(set(self.seeds)) == self.records:
            return f"{self.label}\nmean of {self.records} seeds"
        return f"{self.label}\nmean of {self.records} records"


def layers_problem(result: dict[str, Any]) -> str | None:
    """Why ``result``'s layer profile cannot be drawn: not one pruned fraction (0 to 1) per rate of its grid
    for each layer, or no layer at all."""
    rates, layers = result.get("rates"), result.get("layers")
    if not isinstance(rates, list) or not rates or not all(_fraction(rate) for rate in rates):
        return "its rates are not a list of pruning rates."
    if not isinstance(layers, dict) or not layers:
        return "it records no layers (no pruned fraction per layer)."
    for name, fractions in layers.items():
        if not isinstance(fractions, list) or len(fractions) != len(rates) or not all(map(_fraction, fractions)):
            return f"layers.{name} is not one pruned fraction (0 to 1) per rate."
    return None


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1


def _configuration(result: dict[str, Any]) -> tuple[str, str, str]:
    return str(result.get("method")), str(result.get("variant")), json.dumps(result.get("params"), sort_keys=True)


def profile_panels(results: Sequence[dict[str, Any]]) -> list[ProfilePanel]:
    """The panels of ``results``' layer profile: one per method configuration (method, variant and
    parameters), in order of first appearance, its records' fractions averaged per cell. Records of
    several settings (model, components, dataset), grids or layer lists, or without layers, are a
    `ConfigError`: a profile compares methods on one setting."""
    import numpy as np

    if not results:
        raise ConfigError("give at least one result to draw a layer profile of.")
    for result in results:
        problem = layers_problem(result)
        if problem:
            raise ConfigError(f"cannot draw the layer profile of {_run(result)}: {problem}")
    first = results[0]
    for result in results[1:]:
        if _setting(result) != _setting(first):
            raise ConfigError(f"a layer profile compares methods on one setting, but these results are of "
                              f"{_setting(first)} and {_setting(result)}: draw each setting separately.")
        if [round(float(rate), 6) for rate in result["rates"]] != [round(float(rate), 6) for rate in first["rates"]]:
            raise ConfigError(f"a layer profile draws one grid of rates, but {_run(first)} and {_run(result)} "
                              "have different ones: draw each grid separately.")
        if list(result["layers"]) != list(first["layers"]):
            raise ConfigError(f"{_run(first)} and {_run(result)} record different layers of {_setting(first)}: "
                              "they were not run on the same model; draw them separately.")
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(_configuration(result), []).append(result)
    labels = [f"{method} ({variant})" for method, variant, _ in grouped]
    panels = []
    for (key, records), label in zip(grouped.items(), labels):
        if labels.count(label) > 1:  # the same method and variant with other parameters: a row of its own
            label = f"{label} {key[2] if len(key[2]) <= LABEL_CHARS else key[2][:LABEL_CHARS - 1] + '…'}"
        cells = np.array([[record["layers"][name] for name in first["layers"]] for record in records], dtype=float)
        panels.append(ProfilePanel(
            label=label, seeds=tuple(record.get("seed") for record in records), layers=tuple(first["layers"]),
            rates=tuple(float(rate) for rate in first["rates"]), fractions=cells.mean(axis=0),
            collapsed=(cells >= EMPTY).sum(axis=0)))
    return panels


def _shortened(name: str, tail: int) -> str:
    """``name`` if it has at most `LABEL_CHARS` characters, else its start, an ellipsis and its last ``tail``."""
    if len(name) <= LABEL_CHARS:
        return name
    return f"{name[:max(0, LABEL_CHARS - 1 - tail)]}…{name[-tail:]}"


def _layer_labels(names: Sequence[str]) -> list[str]:
    """``names`` shortened in the middle to `LABEL_CHARS`, keeping as much of their ends as tells them apart."""
    tail = (LABEL_CHARS - 1) * 2 // 3
    while tail < max(map(len, names)) and len({_shortened(name, tail) for name in names}) < len(set(names)):
        tail += 1
    return [_shortened(name, tail) for name in names]


def profile_png(results: list[dict[str, Any]], title: str | None = None) -> bytes:
    """The layer profile of ``results`` (record dicts of one setting and grid): a heatmap per method
    configuration, in order of first appearance, of the fraction of each layer's components pruned (colour,
    0 to 1 on one scale) per layer (rows, in forward order) and rate (columns), averaged over the seeds of a
    configuration; a cross marks a layer pruned entirely (collapsed) in every seed, a plus one collapsed in
    some seeds only. ``title`` defaults to the setting. Deterministic as the curve plots are; its size is
    a function of the number of panels (at most `PROFILE_COLUMNS` a row) and of layers alone."""
    import numpy as np
    from matplotlib import patheffects, style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = profile_panels(results)
    layers, rates = panels[0].layers, panels[0].rates
    columns = min(len(panels), PROFILE_COLUMNS)
    rows = -(-len(panels) // columns)
    height = 0.9 + rows * (0.75 + max(1.2, 0.14 * len(layers)))
    label_size = 7 if len(layers) <= 40 else 5
    with style.context("default"):
        figure = Figure(figsize=(2.2 + 1.9 * columns, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        every = max(1, -(-len(rates) // 6))
        stroke = [patheffects.withStroke(linewidth=2.2, foreground="white")]
        image, partial = None, False
        for index, axes in enumerate(grid.flat):
            if index >= len(panels):
                axes.set_visible(False)
                continue
            panel = panels[index]
            image = axes.imshow(panel.fractions, cmap=PROFILE_CMAP, vmin=0.0, vmax=1.0, aspect="auto",
                                interpolation="nearest")
            for marks, marker, size in ((panel.collapsed == panel.records, "x", 4.5),
                                        ((panel.collapsed > 0) & (panel.collapsed < panel.records), "+", 4.5)):
                y, x = np.nonzero(marks)
                if len(x):
                    partial |= marker == "+"
                    axes.plot(x, y, linestyle="none", marker=marker, markersize=size, markeredgewidth=1.1,
                              color="black", path_effects=stroke)
            axes.set_title(panel.caption(), fontsize=8)
            axes.set_xticks(range(0, len(rates), every), [f"{rate:g}" for rate in rates[::every]], fontsize=7)
            axes.tick_params(labelbottom=index + columns >= len(panels))  # the lowest panel of its column
            axes.set_yticks(range(len(layers)), _layer_labels(layers), fontsize=label_size)
            axes.tick_params(length=2, pad=1.5)
            axes.set_xlim(-0.5, len(rates) - 0.5)
            axes.set_ylim(len(layers) - 0.5, -0.5)  # the first layer on top
        bar = figure.colorbar(image, ax=grid.ravel().tolist(), shrink=0.9, pad=0.02, aspect=30)
        bar.set_label("fraction of the layer pruned", fontsize=8)
        bar.ax.tick_params(labelsize=7)
        legend = "× layer pruned entirely (collapsed)" + (" in every seed, + in some seeds" if partial else "")
        figure.supxlabel(f"pruning rate (fraction of components pruned)\n{legend}", fontsize=8)
        figure.supylabel("layer (forward order)", fontsize=8)
        figure.suptitle(title if title is not None else f"layer profile: {_setting(results[0])}", fontsize=10)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def write_png(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; a path that cannot take it is a `ConfigError`."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}). Choose another --out.") from None
    return path


def _read_drawable(paths: Sequence[Path], problem_of, what: str) -> list[dict[str, Any]]:
    """The results in ``paths``; one ``problem_of`` finds undrawable is a `ConfigError` naming it."""
    results = []
    for path in map(Path, paths):
        result = read_result(path)
        problem = problem_of(result)
        if problem:
            raise ConfigError(f"cannot plot {what}{path}: {problem}")
        results.append(result)
    return results


def read_curves(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The results in ``paths``; a file that is not a result with a drawable curve is a `ConfigError`
    naming it."""
    return _read_drawable(paths, curve_problem, "")


def _png_destination(paths: Sequence[Path], out: Path) -> None:
    """Only ``.png`` (the plots are byte-stable PNGs, and bytes of one format under another's name would
    mislead every program that opens them), at least one file, and a writable folder (created)."""
    if Path(out).suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: plots are PNG images; give a file name ending in .png.")
    if not paths:
        raise ConfigError("give at least one result JSON file to plot.")
    ensure_writable_dir(Path(out).parent)


def plot_result_files(paths: Sequence[Path], out: Path) -> Path:
    """Overlay the curves of the result files ``paths`` in the PNG ``out`` (`_png_destination`)."""
    _png_destination(paths, out)
    curves = curves_png(read_curves(paths), [Path(path).name for path in paths])
    return write_png(Path(out), curves)


def plot_profile_files(paths: Sequence[Path], out: Path) -> Path:
    """Draw the layer profile (`profile_png`) of the result files ``paths`` in the PNG ``out``
    (`_png_destination`)."""
    _png_destination(paths, out)
    results = _read_drawable(paths, layers_problem, "the layer profile of ")
    return write_png(Path(out), profile_png(results))

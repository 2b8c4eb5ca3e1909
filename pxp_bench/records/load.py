"""The one loader of records: which files `leaderboard`, `compare` and the summary may read, and why each
other one is kept out.

Nothing a record states is believed where it can be recomputed. A record enters only when
- its fields have the types the tables, plots and comparisons read (`NEEDED`);
- its curve is a point per rate of its grid, and every rate above 0 pruned something;
- its curve's counts are its per-sample outcomes' and every metric is what its curve gives
  (`pxp_bench.records.recompute`);
- its classes, sample sets, evaluation labels and weights are what its seed and options draw and load
  (`pxp_bench.records.samples`), where the dataset can be loaded here; a record whose sets cannot be drawn
  here enters as *not redrawn*, listed with the reason.
Only what no record can prove (timings, latencies, agreement, the outcomes themselves) is left to
`pxp-bench verify`, which reruns records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pxp_bench.errors import ConfigError
from pxp_bench.records.recompute import recomputation_problem
from pxp_bench.records.samples import NotRedrawn, samples_problem
from pxp_bench.results import PROTOCOL_VERSION, read_result

GRID_DECIMALS = 9
"""Rates are compared rounded to this many decimals: a grid written by another float formatting is the
same grid."""

COMPANION_SUFFIXES = (".best.json", ".provenance.json")
"""JSON files pxp-bench writes beside results that are not results (a study's best parameters and its
provenance): skipped, never kept out."""


@dataclass(frozen=True)
class KeptOut:
    """A JSON file that is not in the leaderboard, and why."""

    path: Path
    """The file as found: the given folder joined with its name (for messages to the user)."""
    name: str
    """``<folder name>/<file name>``: what the leaderboard document shows, the same wherever it is built."""
    reason: str


@dataclass(frozen=True)
class Collection:
    """The results accepted from some folders, the files kept out, and the grid they were held to."""

    results: tuple[dict[str, Any], ...]
    kept_out: tuple[KeptOut, ...]
    rates: tuple[float, ...] | None
    """The grid every result has, or None where any grid was accepted (`compare`)."""
    not_redrawn: tuple[KeptOut, ...] = ()
    """Accepted results whose sample sets could not be drawn here, and why."""
    paths: tuple[Path, ...] = ()
    """The file of each result, in the order of ``results``."""


def describe_grid(rates: Sequence[float]) -> str:
    """A grid in a few words: ``grid of 20 rates 0, 0.05, …, 0.95``."""
    shown = [f"{rate:g}" for rate in rates]
    text = ", ".join(shown) if len(shown) <= 6 else f"{shown[0]}, {shown[1]}, …, {shown[-1]}"
    return f"grid of {len(shown)} rate{'s' if len(shown) != 1 else ''} {text}"


def _number(value: Any) -> bool:
    """A finite int or float: JSON's NaN and Infinity (which Python reads) are no measurement."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_ABSENT = object()


def _absent_or(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is _ABSENT or check(value)


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(_number(item) for item in value)


def _mapping(value: Any) -> bool:
    return isinstance(value, dict)


NEEDED: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{key: (_text, "a text") for key in ("method", "variant", "model", "dataset", "components", "weights",
                                           "created")},
    "seed": (_integer, "an integer"),
    "protocol_version": (_integer, "an integer"),
    "params": (_mapping, "a mapping"),
    "classes": (lambda value: isinstance(value, list) and all(_integer(item) for item in value), "a list of integers"),
    "environment": (_mapping, "a mapping"),
    "rates": (_numbers, "a list of finite numbers"),
    "curve": (lambda value: isinstance(value, list), "a list of points"),
    "metrics": (_mapping, "a mapping"),
    "metrics.a_pr": (_number, "a finite number"),
    "metrics.top_pr": (_number, "a finite number"),
    **{f"metrics.acc_{at}": (_optional(_number), "a finite number or null") for at in (25, 50, 75)},
    **{f"metrics.{key}_at_top_pr": (_absent_or(_optional(_number)), "a finite number or null")
       for key in ("flops", "params")},
    "timings": (_mapping, "a mapping"),
    "timings.total": (_absent_or(_number), "a finite number"),
    "samples": (_mapping, "a mapping"),
    "samples.class_hash": (_text, "a text"),
    "samples.reference": (_integer, "an integer"),
    "samples.image_size": (_optional(_integer), "an integer or null"),
    "outcomes": (_optional(_mapping), "a mapping"),
    "options": (_absent_or(_optional(_mapping)), "a mapping"),
}
"""Every field a table, plot or comparison reads, the type it must have and how that type is said. Flops /
params at Top-PR may be missing (masked runs have none), and so may the total time (optimised results, whose
cost is the study's, record their stages only)."""


def _field(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def _fields_problem(data: dict[str, Any]) -> str | None:
    for name, (check, kind) in NEEDED.items():
        value = _field(data, name)
        if not check(value):
            if value is _ABSENT:
                return f"it lacks {name}: it is damaged or was not written by pxp-bench."
            shown = repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"
            return (f"{name} is {shown}, not {kind} (numbers must be finite: NaN or Infinity is no measurement): "
                    "it was edited or damaged.")
    return None


def curve_problem(data: dict[str, Any]) -> str | None:
    """Why ``data``'s curve cannot be drawn or averaged: not a list of (rate, accuracy) points at its rates."""
    curve, rates = data.get("curve"), data.get("rates")
    if not isinstance(curve, list) or not curve or not all(
            isinstance(point, dict) and _number(point.get("rate")) and _number(point.get("accuracy"))
            for point in curve):
        return "its curve is not a list of points with a rate and an accuracy."
    if not _numbers(rates) or rounded_grid(point["rate"] for point in curve) != rounded_grid(rates):
        return "its curve's rates differ from its grid: the file is damaged."
    return None


def _pruned_nothing(data: dict[str, Any]) -> str | None:
    """A rate above 0 at which no component was pruned: its accuracy is the unpruned model's, and an A_PR
    over such rates is no pruning result."""
    for index, point in enumerate(data["curve"]):
        if point["rate"] > 0 and point.get("pruned") == 0:
            return (f"curve[{index}] (rate {point['rate']:g}) pruned no component, so its A_PR averages unpruned "
                    "accuracies; rerun it with a grid or --max-layer-rate that prunes at every rate above 0.")
    return None


def rounded_grid(rates: Iterable[float]) -> tuple[float, ...]:
    """``rates`` rounded to `GRID_DECIMALS`: what two grids are compared as."""
    return tuple(round(float(rate), GRID_DECIMALS) for rate in rates)


def _protocol_problem(data: dict[str, Any]) -> str | None:
    version = data.get("protocol_version", _ABSENT)
    if _integer(version) and version != PROTOCOL_VERSION:
        return (f"protocol version {version}, not {PROTOCOL_VERSION}: its numbers are measured differently; "
                "rerun it with this pxp-bench.")
    return None


def _grid_problem(data: dict[str, Any], rates: tuple[float, ...] | None) -> str | None:
    if rates is not None and rounded_grid(data["rates"]) != rounded_grid(rates):
        return (f"{describe_grid(data['rates'])}, not the expected {describe_grid(rates)}; "
                "pass --rates to tabulate that grid instead.")
    return None


def judge(path: Path, name: str, rates: tuple[float, ...] | None = None
          ) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """The record in ``path`` (None when kept out), why it is kept out, and why its samples were not
    redrawn where they could not be; messages name the file by ``name``, never by path."""
    try:
        data = read_result(path)
    except ConfigError as exc:
        return None, str(exc).replace(str(path), name), None
    reason = (_protocol_problem(data) or _fields_problem(data) or _grid_problem(data, rates)
              or curve_problem(data) or recomputation_problem(data) or _pruned_nothing(data))
    if reason:
        return None, reason, None
    try:
        reason = samples_problem(data)
    except NotRedrawn as exc:
        return data, None, f"its samples were not redrawn here: {exc}."
    return (None, reason, None) if reason else (data, None, None)


def result_files(folder: Path) -> list[Path]:
    """The top-level ``*.json`` of ``folder`` but pxp-bench's companions (`COMPANION_SUFFIXES`), by name: a
    suite keeps other files in its subfolders."""
    if not folder.exists():
        raise ConfigError(f"results folder {folder} does not exist. Run `pxp-bench run --out {folder}` first.")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give folders of result JSON files.")
    return sorted(path for path in folder.glob("*.json")
                  if path.is_file() and not path.name.endswith(COMPANION_SUFFIXES))


def load_records(sources: Sequence[Path], *, rates: Sequence[float] | None = None) -> Collection:
    """The records in ``sources`` (folders: their top-level result files; or single files), in the given order,
    by file name, held to grid ``rates`` where given; every other file is kept out with its reason.

    Raises `ConfigError` for a source that is missing, or when none is given.
    """
    if not sources:
        raise ConfigError("give at least one folder of result JSON files.")
    grid = tuple(float(rate) for rate in rates) if rates is not None else None
    results, kept_out, not_redrawn, paths = [], [], [], []
    for source in map(Path, sources):
        if source.is_file():
            label, files = source.resolve().parent.name, [source]
        else:
            label, files = source.resolve().name or str(source), result_files(source)
        for path in files:
            name = f"{label}/{path.name}"
            data, reason, unchecked = judge(path, name, grid)
            if data is None:
                kept_out.append(KeptOut(path, name, reason))
                continue
            results.append(data)
            paths.append(path)
            if unchecked:
                not_redrawn.append(KeptOut(path, name, unchecked))
    return Collection(tuple(results), tuple(kept_out), grid, tuple(not_redrawn), tuple(paths))


def collect_results(result_dirs: Sequence[Path], *, rates: Sequence[float] | None = None) -> Collection:
    """The leaderboard's records: `load_records` of folders (held to grid ``rates`` where given)."""
    for folder in map(Path, result_dirs):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is not a folder; give folders of result JSON files.")
    return load_records(result_dirs, rates=rates)

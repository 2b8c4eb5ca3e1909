"""Reading result folders: which files may enter the leaderboard, and why each other one is kept out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pxp_bench.errors import ConfigError
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.results import PROTOCOL_VERSION, read_result

GRID_DECIMALS = 9
"""Rates are compared rounded to this many decimals: a grid written by another float formatting is the
same grid."""


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
    rates: tuple[float, ...]


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
    return isinstance(value, list) and all(_number(item) for item in value)


NEEDED: dict[str, Callable[[Any], bool]] = {
    **{key: _text for key in ("method", "variant", "model", "dataset", "components", "weights", "created")},
    "seed": _integer,
    "protocol_version": _integer,
    "params": lambda value: isinstance(value, dict),
    "classes": lambda value: isinstance(value, list),
    "environment": lambda value: isinstance(value, dict),
    "rates": _numbers,
    "metrics.a_pr": _number,
    "metrics.top_pr": _number,
    **{f"metrics.acc_{at}": _optional(_number) for at in (25, 50, 75)},
    **{f"metrics.{key}_at_top_pr": _absent_or(_optional(_number)) for key in ("flops", "params")},
    "timings": lambda value: isinstance(value, dict),
    "timings.total": _absent_or(_number),
    "samples.class_hash": _text,
    "samples.reference": _integer,
    "samples.image_size": _optional(_integer),
}
"""Every field a table, plot or comparison reads, and the type it must have. Flops / params at Top-PR
may be missing (masked runs have none), and so may the total time (optimised results, whose cost is
the study's, record their stages only)."""


def _field(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _ABSENT
        value = value[key]
    return value


def _fields_problem(data: dict[str, Any]) -> str | None:
    bad = [name for name, check in NEEDED.items() if not check(_field(data, name))]
    if bad:
        return (f"missing or malformed fields the leaderboard needs: {', '.join(bad)}; it was written by an "
                "older pxp-bench or is damaged (numbers must be finite: NaN or Infinity is no measurement).")
    return None


def curve_problem(data: dict[str, Any]) -> str | None:
    """Why ``data``'s curve cannot be drawn or averaged: not a list of (rate, accuracy) points at its rates."""
    curve, rates = data.get("curve"), data.get("rates")
    if not isinstance(curve, list) or not curve or not all(
            isinstance(point, dict) and _number(point.get("rate")) and _number(point.get("accuracy"))
            for point in curve):
        return "its curve is not a list of points with a rate and an accuracy."
    if not _numbers(rates) or _rounded(point["rate"] for point in curve) != _rounded(rates):
        return "its curve's rates differ from its grid: the file is damaged."
    return None


def _rounded(rates: Iterable[float]) -> tuple[float, ...]:
    return tuple(round(float(rate), GRID_DECIMALS) for rate in rates)


def _protocol_problem(data: dict[str, Any]) -> str | None:
    version = data.get("protocol_version", _ABSENT)
    if _integer(version) and version != PROTOCOL_VERSION:
        return (f"protocol version {version}, not {PROTOCOL_VERSION}: its numbers are measured differently; "
                "rerun it with this pxp-bench.")
    return None


def _grid_problem(data: dict[str, Any], rates: tuple[float, ...]) -> str | None:
    if _rounded(data["rates"]) != _rounded(rates):
        return (f"{describe_grid(data['rates'])}, not the expected {describe_grid(rates)}; "
                "pass --rates to tabulate that grid instead.")
    return None


def _judge(path: Path, name: str, rates: tuple[float, ...]) -> tuple[dict[str, Any] | None, str | None]:
    """The result in ``path``, or why it is kept out (messages name the file by ``name``, never by path)."""
    try:
        data = read_result(path)
    except ConfigError as exc:
        return None, str(exc).replace(str(path), name)
    reason = (_protocol_problem(data) or _fields_problem(data) or _grid_problem(data, rates)
              or curve_problem(data))
    return (None, reason) if reason else (data, None)


def _json_files(folder: Path) -> list[Path]:
    """The top-level ``*.json`` of ``folder``, by name: a suite keeps other files in its subfolders."""
    if not folder.exists():
        raise ConfigError(f"results folder {folder} does not exist. Run `pxp-bench run --out {folder}` first.")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give folders of result JSON files.")
    return sorted(path for path in folder.glob("*.json") if path.is_file())


def collect_results(result_dirs: Sequence[Path], *, rates: Sequence[float] = DEFAULT_RATES) -> Collection:
    """The results of protocol `PROTOCOL_VERSION` on grid ``rates`` in the top-level ``*.json`` of each
    folder (in the given order, by file name); every other JSON file is kept out with its reason.

    Raises `ConfigError` for a folder that is missing or not a folder, or when none is given.
    """
    if not result_dirs:
        raise ConfigError("give at least one folder of result JSON files.")
    rates = tuple(float(rate) for rate in rates)
    results, kept_out = [], []
    for folder in map(Path, result_dirs):
        label = folder.resolve().name or str(folder)
        for path in _json_files(folder):
            name = f"{label}/{path.name}"
            data, reason = _judge(path, name, rates)
            if data is None:
                kept_out.append(KeptOut(path, name, reason))
            else:
                results.append(data)
    return Collection(tuple(results), tuple(kept_out), rates)

"""Hyperparameter spaces: what a method declares, how ``--param`` / ``--params`` / presets resolve.

One declaration format serves the CLI (typing ``key=value`` strings), presets, JSON files and the
optimizers (which enumerate or sample each parameter marked ``searched``).
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

from pxp_bench.errors import ConfigError


@dataclass(frozen=True)
class Categorical:
    """One of a fixed set of choices (strings, numbers or booleans)."""

    choices: tuple[Any, ...]
    default: Any
    searched: bool = True
    """Whether optimizers search this parameter by default (else it stays at its value)."""

    def parse(self, text: str) -> Any:
        for choice in self.choices:
            if str(choice).lower() == text.strip().lower():
                return choice
        raise ValueError(f"expected one of {', '.join(map(str, self.choices))}")

    def validate(self, value: Any) -> Any:
        if value in self.choices and type(value) is type(self.default):
            return value
        if isinstance(value, str):
            return self.parse(value)
        raise ValueError(f"expected one of {', '.join(map(str, self.choices))}")

    def describe(self) -> str:
        return "{" + ", ".join(map(str, self.choices)) + "}"


@dataclass(frozen=True)
class IntRange:
    """An integer in ``[low, high]``."""

    low: int
    high: int
    default: int
    log: bool = False
    searched: bool = True

    def parse(self, text: str) -> int:
        try:
            return self.validate(int(text.strip()))
        except ValueError as exc:
            raise ValueError(f"expected an integer in [{self.low}, {self.high}]") from exc

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise ValueError(f"expected an integer in [{self.low}, {self.high}]")
        return value

    def describe(self) -> str:
        return f"int [{self.low}, {self.high}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class FloatRange:
    """A float in ``[low, high]``; ``log=True`` tells optimizers to search it on a log scale."""

    low: float
    high: float
    default: float
    log: bool = False
    searched: bool = True

    def parse(self, text: str) -> float:
        try:
            return self.validate(float(text.strip()))
        except ValueError as exc:
            raise ValueError(f"expected a number in [{self.low:g}, {self.high:g}]") from exc

    def validate(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number in [{self.low:g}, {self.high:g}]")
        value = float(value)
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"expected a number in [{self.low:g}, {self.high:g}]")
        return value

    def describe(self) -> str:
        return f"float [{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


Param = Union[Categorical, IntRange, FloatRange]
ParamSpace = Mapping[str, Param]

DEFAULT_PRESET = "default"


def _unknown_key(key: str, space: ParamSpace, owner: str) -> ConfigError:
    known = sorted(space)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    listing = ", ".join(known) if known else "none"
    return ConfigError(f"unknown parameter '{key}' for {owner}.{hint} Known parameters: {listing}.")


def _checked(key: str, value: Any, space: ParamSpace, owner: str, *, from_text: bool) -> Any:
    if key not in space:
        raise _unknown_key(key, space, owner)
    try:
        return space[key].parse(value) if from_text else space[key].validate(value)
    except ValueError as exc:
        raise ConfigError(f"bad value {value!r} for parameter '{key}' of {owner}: {exc}.") from None


def parse_param_pairs(pairs: list[str]) -> dict[str, str]:
    """Split repeated ``key=value`` options into a dict (values stay text until typed by a space)."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects key=value, got '{pair}'.")
        parsed[key.strip()] = value
    return parsed


def read_params_file(path: Path) -> dict[str, Any]:
    """Read a ``--params`` JSON file holding one object of parameter values."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"params file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read params file {path}: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"params file {path} is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a JSON object of name: value pairs.")
    return data


def resolve_params(
    space: ParamSpace,
    *,
    owner: str,
    preset: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Defaults, overlaid by a preset, then typed values (a JSON file), then ``key=value`` texts."""
    resolved = {key: param.default for key, param in space.items()}
    for source, from_text in ((preset, False), (values, False), (texts, True)):
        for key, value in (source or {}).items():
            resolved[key] = _checked(key, value, space, owner, from_text=from_text)
    return resolved


def searched_space(space: ParamSpace) -> dict[str, Param]:
    """The parameters an optimizer searches by default."""
    return {key: param for key, param in space.items() if param.searched}


def grid_size(space: ParamSpace) -> int | None:
    """Number of points of the searched space when it is all categorical, else None (continuous)."""
    size = 1
    for param in searched_space(space).values():
        if not isinstance(param, Categorical):
            return None
        size *= len(param.choices)
    return size

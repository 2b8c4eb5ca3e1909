"""A suite file's fields, read and validated (`pxp_bench.suites.definition` shows the format): the run
options a suite or ``--set`` gives its cells (`RUN_OPTIONS`, each converted from its TOML or ``--set``
text), the seeds, the ``[[settings]]`` (a model and its component kinds) and the ``[[methods]]`` (a method
with presets, or with a parameters file). Every problem is an error naming the file and the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pxp_bench.conditions import check_choices
from pxp_bench.errors import ConfigError
from pxp_bench.params import DEFAULT_PRESET
from pxp_bench.plan import check_max_layer_rate
from pxp_bench.plugins import Plugins
from pxp_bench.rates import parse_rates
from pxp_bench.seeds import MAX_SEED
from pxp_bench.specs import COMPONENT_KINDS


def _classes(value: Any) -> int | None:
    if value == "all":
        return None
    return _integer(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    return int(value)


def _rates(value: Any) -> tuple[float, ...]:
    return parse_rates(",".join(str(rate) for rate in value) if isinstance(value, list) else str(value))


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _optional_integer(value: Any) -> int | None:
    return None if value in (None, "none") else _integer(value)


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "none") else _text(value)


def _max_layer_rate(value: Any) -> float | None:
    if value in (None, "none"):
        return None
    if isinstance(value, bool):
        raise ValueError("expected a number")
    check_max_layer_rate(float(value))
    return float(value)


def _boolean(value: Any) -> bool:
    """A TOML boolean, or ``true`` / ``false`` from ``--set``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("expected true or false")


RUN_OPTIONS: dict[str, Callable[[Any], Any]] = {
    "dataset": _text, "data_root": _text, "weights": _text, "rates": _rates, "n_classes": _classes,
    "ref_per_class": _integer, "tune_per_class": _integer, "device": _text, "batch_size": _integer,
    "image_size": _optional_integer, "amp": _optional_text, "evaluate": _text, "latency_repeats": _integer,
    "max_layer_rate": _max_layer_rate, "agreement": _boolean, "encoding": _optional_text,
    "removal": _text, "recover": _text, "recover_steps": _optional_integer, "schedule": _text, "scope": _text,
}
"""The `Benchmark` fields a suite sets for its cells (method, parameters and seed come from the matrix),
each with the conversion from its TOML or ``--set`` text."""


def convert_option(where: str, key: str, value: Any) -> Any:
    """Run option ``key``'s ``value`` converted (`RUN_OPTIONS`); an unknown or invalid one is an error at ``where``."""
    if key not in RUN_OPTIONS:
        raise ConfigError(f"{where}: unknown option '{key}'; suites may set {', '.join(sorted(RUN_OPTIONS))}.")
    try:
        return RUN_OPTIONS[key](value)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{where}: option '{key}' = {value!r} is not valid ({exc}).") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set key=value`` texts as run options (they replace the suite's values in every cell)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair}: write it as key=value, e.g. --set image_size=64.")
        overrides[key.strip().replace("-", "_")] = convert_option("--set", key.strip().replace("-", "_"), value.strip())
    return overrides


def table(data: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    """``data[key]``, a table (``kind`` dict) or a list of tables (``kind`` list); empty when absent."""
    value = data.get(key, kind())
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {'table' if kind is dict else 'list of tables'}.")
    return value


def only_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse a key of ``entry`` that is not ``allowed``."""
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def seeds_of(value: Any, where: str) -> tuple[int, ...]:
    """The suite's ``seeds``: a count (seeds 0 to count - 1) or a list of seeds."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SEED + 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED
                                                 for s in value):
        return tuple(value)
    raise ConfigError(f"{where}: 'seeds' must be a count (e.g. 20) or a list of seeds between 0 and {MAX_SEED} "
                      "(e.g. [0, 1, 2]).")


@dataclass(frozen=True)
class MethodEntry:
    """One ``[[methods]]`` table: a method with presets, or (``variant``) with a parameters file."""

    method: str
    presets: tuple[str, ...]
    variant: str | None
    params: str | None
    made_by: str | None


def method_entries(data: Mapping[str, Any], where: str, plugins: Plugins) -> list[MethodEntry]:
    """The suite's ``[[methods]]``, each method known to ``plugins`` and its presets its own."""
    entries = []
    for number, entry in enumerate(table(data, "methods", where, list), start=1):
        here = f"{where} [[methods]] #{number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
            raise ConfigError(f"{here}: needs method = \"NAME\".")
        only_keys(entry, {"method", "presets", "variant", "params", "made_by"}, here)
        spec = plugins.methods.get(entry["method"])
        if "params" in entry:
            if "presets" in entry or not isinstance(entry.get("variant"), str):
                raise ConfigError(f"{here}: a parameters file needs variant = \"NAME\" (e.g. optimised) and no presets.")
            presets: tuple[str, ...] = ()
        else:
            presets = tuple(entry.get("presets", [DEFAULT_PRESET]))
            unknown = [p for p in presets if p != DEFAULT_PRESET and p not in spec.presets]
            if unknown or not presets:
                raise ConfigError(f"{here}: method '{spec.name}' has no preset {', '.join(map(repr, unknown)) or '(none given)'}; "
                                  f"presets: {', '.join(spec.preset_names())}.")
        entries.append(MethodEntry(spec.name, presets, entry.get("variant"), entry.get("params"), entry.get("made_by")))
    if not entries:
        raise ConfigError(f"{where}: no [[methods]].")
    return entries


def settings_of(data: Mapping[str, Any], where: str, shared: Mapping[str, Any],
                overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The suite's ``[[settings]]``, one per model and component kind: the ``[run]`` options (``shared``),
    the setting's own, then ``overrides`` (``--set``, ``--data``)."""
    settings = []
    for number, entry in enumerate(table(data, "settings", where, list), start=1):
        here = f"{where} [[settings]] #{number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise ConfigError(f"{here}: needs model = \"NAME\".")
        kinds = entry.get("components", [None])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        bad = [k for k in kinds if k is not None and k not in COMPONENT_KINDS]
        if bad or not isinstance(kinds, list):
            raise ConfigError(f"{here}: components must be among {', '.join(COMPONENT_KINDS)}, got {kinds!r}.")
        own = {key: convert_option(here, key, value) for key, value in entry.items() if key not in ("model", "components")}
        for kind in kinds:
            settings.append({**shared, **own, **overrides, "model": entry["model"], "components": kind})
    if not settings:
        raise ConfigError(f"{where}: no [[settings]].")
    return settings



CONDITION_KEYS = ("removal", "recover", "recover_steps", "schedule", "scope")
"""What a ``[[conditions]]`` table may set (`pxp_bench.conditions`)."""


def conditions_of(data: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
    """The suite's ``[[conditions]]``, each checked (`pxp_bench.conditions.check_choices`); one empty
    condition (the ``[run]`` options' own) when the suite has none. A condition with ``models`` applies to
    the settings of those models only (e.g. ``recover = "bn"`` to the models that have BatchNorm)."""
    entries = table(data, "conditions", where, list)
    if not entries:
        return [{}]
    conditions = []
    for number, entry in enumerate(entries, start=1):
        here = f"{where} [[conditions]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{here}: must be a table of {', '.join(CONDITION_KEYS)}.")
        only_keys(entry, {*CONDITION_KEYS, "models"}, here)
        models = entry.get("models")
        if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
            raise ConfigError(f"{here}: models must be a list of model names (the settings it applies to).")
        condition = {key: convert_option(here, key, value) for key, value in entry.items() if key != "models"}
        try:
            check_choices(condition.get("removal", "zero"), condition.get("recover", "none"),
                          condition.get("schedule", "oneshot"), condition.get("scope", "global"),
                          condition.get("recover_steps"))
        except ConfigError as exc:
            raise ConfigError(f"{here}: {exc}") from None
        conditions.append({**condition, **({"models": models} if models is not None else {})})
    return conditions

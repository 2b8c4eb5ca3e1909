"""Suite files: a TOML matrix of settings x methods x seeds, validated on load, expanded into cells.

A suite file (``benchmarks/suites/NAME.toml``)::

    description = "what the suite answers"
    seeds = [0, 1, 2]                      # or a count: 20 means seeds 0..19

    [run]                                  # options of `pxp-bench run` shared by every cell
    n_classes = 3

    [[settings]]                           # a model and its component kinds; may override [run] keys
    model = "vgg16"
    components = ["filters"]

    [[methods]]                            # a method with presets, or with a parameters file
    method = "lrp"
    presets = ["default", "epsilon"]

    [[methods]]
    method = "lrp"
    variant = "optimised"
    params = "{model}_{components}_lrp_seeds0-1-2.best.json"   # in a folder named like the suite, beside it
    made_by = "pxp-bench optimize --method lrp --model {model} ..."  # how such a file is made ({model},
                                                                      # {components}, {dataset}, {rates}, {params_dir})

A file with ``extends = "BASE"`` (and only a description and ``[[methods]]`` besides) is suite BASE with
those methods added: BASE's cells keep their keys, so it adds only the new cells to BASE's results. BASE
is a suite name or a ``.toml`` path relative to the extending file's folder.

A method or preset listed twice makes the same cells; they are kept once, with a warning.

A method that cannot score a setting's components or model family is left out of that setting (the
count is shown); every other problem is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import tomllib
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

from pxp_bench.errors import ConfigError, UnknownNameError
from pxp_bench.params import DEFAULT_PRESET, read_params_file
from pxp_bench.plan import MAX_SEED, Benchmark, check_max_layer_rate, file_safe_model
from pxp_bench.plugins import Plugins
from pxp_bench.rates import DEFAULT_RATES, parse_rates
from pxp_bench.specs import COMPONENT_KINDS

SUITES_ENV = "PXP_BENCH_SUITES"
"""Extra folders of suite files (os.pathsep-separated), searched before the built-in ones."""


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
}
"""The `Benchmark` fields a suite sets for its cells (method, parameters and seed come from the matrix),
each with the conversion from its TOML or ``--set`` text."""


@dataclass(frozen=True)
class Cell:
    """One run of the matrix: a `Benchmark` configuration, keyed by the hash of all of it."""

    config: Mapping[str, Any]
    label: str
    optimisation: Mapping[str, Any] | None = None
    """For a cell of an optimised variant: the study its parameters came from (recorded in its result)."""

    @cached_property
    def key(self) -> str:
        identity = self.config if self.optimisation is None else {"config": self.config, "optimisation": self.optimisation}
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def benchmark(self) -> Benchmark:
        config = dict(self.config)
        config["rates"] = tuple(config["rates"])
        if config.get("data_root") is not None:
            config["data_root"] = Path(config["data_root"])
        return Benchmark(**config)


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    description: str
    cells: tuple[Cell, ...]
    settings: int
    methods: int
    seeds: tuple[int, ...]
    not_applicable: int
    """Setting x method combinations left out: the method cannot score them."""
    missing: tuple[str, ...] = ()
    """Parameters files the cells need that do not exist yet (each with how to make it); only a suite
    loaded with ``require_params=False`` (for listing) has any."""


def search_folders() -> list[Path]:
    """Where suite names are looked up: ``$PXP_BENCH_SUITES``, ``./benchmarks/suites``, and the
    ``benchmarks/suites`` of the source tree pxp-bench runs from."""
    extra = [Path(part) for part in os.environ.get(SUITES_ENV, "").split(os.pathsep) if part]
    here = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
    folders = [*extra, Path.cwd() / "benchmarks" / "suites", here]
    unique: list[Path] = []
    for folder in folders:
        if folder.is_dir() and folder.resolve() not in [f.resolve() for f in unique]:
            unique.append(folder)
    return unique


def available_suites() -> dict[str, Path]:
    """Suite name -> file, the first folder of `search_folders` winning."""
    found: dict[str, Path] = {}
    for folder in search_folders():
        for path in sorted(folder.glob("*.toml")):
            found.setdefault(path.stem, path)
    return found


def find_suite(name: str) -> Path:
    """A suite file by name, or a path to one."""
    if name.endswith(".toml"):
        if not Path(name).is_file():
            raise ConfigError(f"suite file {name} does not exist.")
        return Path(name)
    suites = available_suites()
    if name not in suites:
        known = ", ".join(sorted(suites)) or "none"
        raise ConfigError(f"unknown suite '{name}'; known suites: {known} (`pxp-bench suite list`). A suite "
                          f"can also be given as a path to its .toml file, or put in a folder named in {SUITES_ENV}.")
    return suites[name]


def _convert(where: str, key: str, value: Any) -> Any:
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
        overrides[key.strip().replace("-", "_")] = _convert("--set", key.strip().replace("-", "_"), value.strip())
    return overrides


def _table(data: Mapping[str, Any], key: str, where: str, kind: type) -> Any:
    value = data.get(key, kind())
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: '{key}' must be a {'table' if kind is dict else 'list of tables'}.")
    return value


def _only_keys(entry: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.")


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SEED + 1:
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED
                                                 for s in value):
        return tuple(value)
    raise ConfigError(f"{where}: 'seeds' must be a count (e.g. 20) or a list of seeds between 0 and {MAX_SEED} "
                      "(e.g. [0, 1, 2]).")


@dataclass(frozen=True)
class _MethodEntry:
    method: str
    presets: tuple[str, ...]
    variant: str | None
    params: str | None
    made_by: str | None


def _method_entries(data: Mapping[str, Any], where: str, plugins: Plugins) -> list[_MethodEntry]:
    entries = []
    for number, entry in enumerate(_table(data, "methods", where, list), start=1):
        here = f"{where} [[methods]] #{number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("method"), str):
            raise ConfigError(f"{here}: needs method = \"NAME\".")
        _only_keys(entry, {"method", "presets", "variant", "params", "made_by"}, here)
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
        entries.append(_MethodEntry(spec.name, presets, entry.get("variant"), entry.get("params"), entry.get("made_by")))
    if not entries:
        raise ConfigError(f"{where}: no [[methods]].")
    return entries


def _settings(data: Mapping[str, Any], where: str, shared: Mapping[str, Any], overrides: Mapping[str, Any]) -> list[dict[str, Any]]:
    settings = []
    for number, entry in enumerate(_table(data, "settings", where, list), start=1):
        here = f"{where} [[settings]] #{number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise ConfigError(f"{here}: needs model = \"NAME\".")
        kinds = entry.get("components", [None])
        kinds = [kinds] if isinstance(kinds, str) else kinds
        bad = [k for k in kinds if k is not None and k not in COMPONENT_KINDS]
        if bad or not isinstance(kinds, list):
            raise ConfigError(f"{here}: components must be among {', '.join(COMPONENT_KINDS)}, got {kinds!r}.")
        own = {key: _convert(here, key, value) for key, value in entry.items() if key not in ("model", "components")}
        for kind in kinds:
            settings.append({**shared, **own, **overrides, "model": entry["model"], "components": kind})
    if not settings:
        raise ConfigError(f"{where}: no [[settings]].")
    return settings


OPTIMISED = "optimised"
BEST_SUFFIX, PROVENANCE_SUFFIX = ".best.json", ".provenance.json"
"""`pxp-bench optimize` writes ``<study>.best.json`` and, beside it, ``<study>.provenance.json``."""


def _provenance(entry: _MethodEntry, path: Path, where: str) -> dict[str, Any] | None:
    """The study behind an optimised variant's parameters file (``X.provenance.json`` beside
    ``X.best.json``); required for variant ``optimised``, whose rows claim a study."""
    beside = path.with_name(path.name.removesuffix(BEST_SUFFIX) + PROVENANCE_SUFFIX) if path.name.endswith(BEST_SUFFIX) else None
    if beside is None or not beside.is_file():
        if entry.variant != OPTIMISED:
            return None
        raise ConfigError(f"{where}: {entry.method} ({entry.variant}) needs the study's provenance beside {path} "
                          f"(a '<study>{PROVENANCE_SUFFIX}' file, written by `pxp-bench optimize` with the "
                          "best parameters); rerun the study, or name the variant otherwise.")
    try:
        provenance = json.loads(beside.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{where}: the provenance file {beside} is unreadable ({exc}).") from None
    if not isinstance(provenance, dict) or not isinstance(provenance.get("study"), str):
        raise ConfigError(f"{where}: the provenance file {beside} is not a study record (no 'study' name).")
    return provenance


def _parameters(entry: _MethodEntry, setting: Mapping[str, Any], folder: Path, where: str,
                missing: list[str] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The parameters file's values and its study's provenance; a missing file is an error, or noted in
    ``missing`` when given."""
    fill = {"model": setting["model"], "components": setting["components"], "dataset": setting.get("dataset", ""),
            "rates": ",".join(f"{rate:g}" for rate in setting.get("rates", DEFAULT_RATES)), "params_dir": str(folder)}
    path = folder / entry.params.format(**{**fill, "model": file_safe_model(setting["model"])})  # as optimize names it
    if not path.is_file():
        how = f"make it with `{entry.made_by.format(**fill)}`" if entry.made_by else "make it with `pxp-bench optimize`"
        message = f"the parameters file {path} for {entry.method} ({entry.variant}) is missing; {how}"
        if missing is None:
            raise ConfigError(f"{where}: {message}, or point --params-dir at a folder that has it.")
        missing.append(message)
        return {}, None
    return read_params_file(path), _provenance(entry, path, where)


def load_suite(name: str, plugins: Plugins, *, data: Path | None = None, seeds: tuple[int, ...] | None = None,
               overrides: Mapping[str, Any] | None = None, params_dir: Path | None = None,
               require_params: bool = True) -> Suite:
    """Read, validate and expand a suite; ``data``, ``seeds``, ``overrides`` (``--set``) and
    ``params_dir`` replace what the file says, for every cell. Without ``require_params`` a missing
    parameters file is noted in `Suite.missing` instead of refused (to list a suite's size)."""
    path = find_suite(name)
    try:
        return _load(path, plugins, data, seeds, overrides, params_dir, require_params)
    except UnknownNameError as exc:  # a method or model the registries lack: say which file names it
        raise ConfigError(f"{path}: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"suite {path} cannot be read: {exc}.") from None


def _base_file(path: Path, base_name: str) -> Path:
    """The suite ``extends = "BASE"`` names in the file ``path``: a ``.toml`` path relative to that file's
    folder (not the working directory), or a suite name, found beside that file first, then as
    `find_suite` finds names."""
    if base_name.endswith(".toml"):
        base_path = path.parent / Path(base_name).expanduser()  # an absolute path stays as it is
        if not base_path.is_file():
            raise ConfigError(f"{path}: extends = \"{base_name}\" names {base_path}, which does not exist; a "
                              f"relative path is read beside {path.name}: fix the path, or name a suite "
                              "(`pxp-bench suite list`).")
        return base_path
    beside = path.parent / f"{base_name}.toml"
    if beside.is_file():
        return beside
    try:
        return find_suite(base_name)
    except ConfigError as exc:
        raise ConfigError(f"{path}: extends = \"{base_name}\": {exc}") from None


def _with_base(path: Path, data_file: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A suite file with ``extends = "BASE"`` is its base suite with the file's ``[[methods]]`` added (and
    its own description): the base's cells keep their keys, so running it into the base's output folder
    runs only the added cells. The base's parameters folder serves both. Returns the merged file and the
    file whose folder holds the parameters."""
    if "extends" not in data_file:
        return data_file, path
    _only_keys(data_file, {"extends", "description", "methods"}, f"{path} (a suite that extends another)")
    base_name = data_file["extends"]
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: 'extends' must name a suite, e.g. extends = \"digits\".")
    base_path = _base_file(path, base_name)
    if base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: a suite cannot extend itself.")
    base = _read(base_path)
    if "extends" in base:
        raise ConfigError(f"{path}: extends '{base_name}', which extends another suite; extend the first one.")
    methods = [*_table(base, "methods", str(base_path), list), *_table(data_file, "methods", str(path), list)]
    return {**base, "description": data_file.get("description", base.get("description", "")), "methods": methods}, base_path


def _load(path: Path, plugins: Plugins, data: Path | None, seeds: tuple[int, ...] | None,
          overrides: Mapping[str, Any] | None, params_dir: Path | None, require_params: bool) -> Suite:
    where = str(path)
    data_file, params_home = _with_base(path, _read(path))
    _only_keys(data_file, {"description", "seeds", "run", "settings", "methods"}, where)
    shared = {key: _convert(f"{where} [run]", key, value) for key, value in _table(data_file, "run", where, dict).items()}
    extra = dict(overrides or {})
    if data is not None:
        extra["data_root"] = str(data)
    settings = _settings(data_file, where, shared, extra)
    entries = _method_entries(data_file, where, plugins)
    suite_seeds = seeds or _seeds(data_file.get("seeds"), where)
    folder = params_dir or params_home.parent / params_home.stem
    cells, not_applicable, missing = [], 0, None if require_params else []
    for setting in settings:
        family = plugins.models.get(setting["model"]).family
        for entry in entries:
            spec = plugins.methods.get(entry.method)
            kind = setting["components"]
            if family not in spec.families or (kind is not None and kind not in spec.components):
                not_applicable += 1
                continue
            study = None
            if entry.params:
                params, study = _parameters(entry, setting, folder, where, missing)
                runs = [{"params": params, "variant": entry.variant}]
            else:
                runs = [{"preset": None if preset == DEFAULT_PRESET else preset} for preset in entry.presets]
            for run in runs:
                name_of_run = run.get("variant") or run.get("preset") or DEFAULT_PRESET
                for seed in suite_seeds:
                    config = {**setting, "method": entry.method, **run, "seed": seed}
                    label = f"{setting['model']}/{kind or 'default'} {entry.method}:{name_of_run} seed {seed}"
                    cells.append(Cell(_complete(config), label, study))
    cells = _distinct(cells, where)
    return Suite(path.stem, path, str(data_file.get("description", "")), tuple(cells), len(settings), len(entries),
                 suite_seeds, not_applicable, tuple(missing or ()))


def _distinct(cells: list[Cell], where: str) -> list[Cell]:
    """The cells without repeats (a method or preset listed twice makes the same cells, with the same
    keys): each is run and counted once, and one warning per repeated method and preset names it."""
    seen: set[str] = set()
    distinct, repeated = [], {}
    for cell in cells:
        if cell.key in seen:
            what = cell.label.rsplit(" seed ", 1)[0].rsplit(" ", 1)[-1]  # "model/kind method:preset seed N"
            repeated.setdefault(what, []).append(cell.label)
            continue
        seen.add(cell.key)
        distinct.append(cell)
    for what, labels in repeated.items():
        warnings.warn(f"{where}: {what} is listed more than once; its {len(labels)} repeated cell"
                      f"{'' if len(labels) == 1 else 's'} (e.g. '{labels[0]}') run and count once: "
                      "remove the repeat from the suite file.", UserWarning, stacklevel=2)
    return distinct


def select(suite: Suite, patterns: list[str]) -> Suite:
    """The cells whose label matches one of the fnmatch ``patterns`` (e.g. ``"resnet18/*"``,
    ``"* lrp:* seed 0"``); all of them without patterns."""
    if not patterns:
        return suite
    cells = tuple(cell for cell in suite.cells if any(fnmatch.fnmatchcase(cell.label, p) for p in patterns))
    if not cells:
        raise ConfigError(f"--only {' '.join(patterns)} matches no cell of suite '{suite.name}'; labels look like "
                          f"'{suite.cells[0].label}'.")
    return dataclasses.replace(suite, cells=cells)


ADDED_LATER = {"max_layer_rate": None, "agreement": False, "encoding": None}
"""`Benchmark` fields added after suites had run: left out of a cell's key while at their default (which
is how the earlier cells ran), so adding them reran nothing."""
NOT_IN_KEY = ("ablation_cache",)
"""Where a cell keeps caches, not what it measures (the runner sets it)."""


def _complete(config: Mapping[str, Any]) -> dict[str, Any]:
    """Every `Benchmark` field, defaults filled in, so a cell's key changes with any of them (but
    `ADDED_LATER` and `NOT_IN_KEY`)."""
    defaults = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
                for f in dataclasses.fields(Benchmark) if f.name not in NOT_IN_KEY}
    full = {**defaults, **config}
    for name, default in ADDED_LATER.items():
        if full.get(name) == default:
            del full[name]
    full["rates"] = list(full["rates"])
    full["data_root"] = None if full["data_root"] is None else str(full["data_root"])
    full["scores_file"] = None
    return full

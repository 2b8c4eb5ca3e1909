"""Suite files: a TOML matrix of settings x methods x seeds, validated on load, expanded into cells.

A suite file (``benchmarks/suites/NAME.toml``)::

    description = "what the suite answers"
    seeds = [0, 1, 2]                      # or a count: 20 means seeds 0..19

    [run]                                  # options of `pxp-bench run` shared by every cell
    n_classes = 3

    [[settings]]                           # a model and its component kinds; may override [run] keys
    model = "vgg16"
    components = ["filters"]

    [[conditions]]                         # optional: each cell runs under each condition (the four
    recover = "bn"                         # choices of `pxp_bench.conditions`; {} is the paper's protocol),
    models = ["vgg16"]                     # optionally for some models only

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

This module holds a loaded suite and its cells (`Suite`, `Cell`, the key of a cell), the expansion of a
file into cells (`load_suite`, with the parameters files and study provenance of optimised variants) and
the selection of cells by label (`select`). Finding and reading the files is `pxp_bench.suites.files`,
validating their fields `pxp_bench.suites.fields`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from pxp_bench.errors import ConfigError, UnknownNameError
from pxp_bench.params import DEFAULT_PRESET, read_params_file
from pxp_bench.plan import Benchmark, file_safe_model
from pxp_bench.plugins import Plugins
from pxp_bench.rates import DEFAULT_RATES
from pxp_bench.conditions import condition_of
from pxp_bench.suites.fields import (CONDITION_KEYS, MethodEntry, conditions_of, convert_option, method_entries, only_keys, seeds_of,
                                     settings_of, table)
from pxp_bench.suites.files import find_suite, read_suite_file, with_base


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


OPTIMISED = "optimised"
BEST_SUFFIX, PROVENANCE_SUFFIX = ".best.json", ".provenance.json"
"""`pxp-bench optimize` writes ``<study>.best.json`` and, beside it, ``<study>.provenance.json``."""


def _provenance(entry: MethodEntry, path: Path, where: str) -> dict[str, Any] | None:
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


def _parameters(entry: MethodEntry, setting: Mapping[str, Any], folder: Path, where: str,
                missing: list[str] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The parameters file's values and its study's provenance; a missing file is an error, or noted in
    ``missing`` when given."""
    fill = {"model": setting["model"], "components": setting["components"], "dataset": setting.get("dataset", ""),
            "rates": ",".join(f"{rate:g}" for rate in setting.get("rates", DEFAULT_RATES)), "params_dir": str(folder)}
    path = Path(os.path.normpath(folder / entry.params.format(**{**fill, "model": file_safe_model(setting["model"])})))
    # (as optimize names it; normalised, so that another suite's folder can be named as ../SUITE/FILE)
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


def _load(path: Path, plugins: Plugins, data: Path | None, seeds: tuple[int, ...] | None,
          overrides: Mapping[str, Any] | None, params_dir: Path | None, require_params: bool) -> Suite:
    where = str(path)
    data_file, params_home = with_base(path, read_suite_file(path))
    only_keys(data_file, {"description", "seeds", "run", "settings", "conditions", "methods"}, where)
    shared = {key: convert_option(f"{where} [run]", key, value) for key, value in table(data_file, "run", where, dict).items()}
    extra = dict(overrides or {})
    if data is not None:
        extra["data_root"] = str(data)
    conditions = conditions_of(data_file, where)
    settings = [{**setting, **{key: value for key, value in condition.items() if key != "models"}}
                for setting in settings_of(data_file, where, shared, extra) for condition in conditions
                if setting["model"] in condition.get("models", [setting["model"]])]
    entries = method_entries(data_file, where, plugins)
    suite_seeds = seeds or seeds_of(data_file.get("seeds"), where)
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
                    label = f"{setting['model']}/{kind or 'default'}{_condition_label(config)} {entry.method}:{name_of_run} seed {seed}"
                    cells.append(Cell(_complete(config), label, study))
    cells = _distinct(cells, where)
    return Suite(path.stem, path, str(data_file.get("description", "")), tuple(cells), len(settings), len(entries),
                 suite_seeds, not_applicable, tuple(missing or ()))


def _condition_label(config: Mapping[str, Any]) -> str:
    """`` [BN recalibration]`` in a cell's label where its condition is not the paper's (labels of the paper's
    cells read as before, so ``--only`` patterns keep matching them)."""
    condition = condition_of(Benchmark(**{key: config[key] for key in CONDITION_KEYS if key in config}))
    return "" if condition.is_paper else f" [{condition.label}]"


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


ADDED_LATER = {"max_layer_rate": None, "agreement": False, "encoding": None, "removal": "zero", "recover": "none",
               "recover_steps": None, "schedule": "oneshot", "scope": "global"}
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

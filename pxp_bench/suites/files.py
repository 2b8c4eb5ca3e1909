"""Where suite files are and how one is read: suite names looked up in folders (`search_folders`,
``$PXP_BENCH_SUITES`` first), a file's TOML, and a file that ``extends`` another read as its base suite
with the file's ``[[methods]]`` added."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pxp_bench.errors import ConfigError
from pxp_bench.suites.fields import only_keys, table

SUITES_ENV = "PXP_BENCH_SUITES"
"""Extra folders of suite files (os.pathsep-separated), searched before the built-in ones."""


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


def read_suite_file(path: Path) -> dict[str, Any]:
    """The TOML of suite file ``path``; unreadable or invalid TOML is an error naming it."""
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


def with_base(path: Path, data_file: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """A suite file with ``extends = "BASE"`` is its base suite with the file's ``[[methods]]`` added (and
    its own description): the base's cells keep their keys, so running it into the base's output folder
    runs only the added cells. The base's parameters folder serves both. Returns the merged file and the
    file whose folder holds the parameters."""
    if "extends" not in data_file:
        return data_file, path
    only_keys(data_file, {"extends", "description", "methods"}, f"{path} (a suite that extends another)")
    base_name = data_file["extends"]
    if not isinstance(base_name, str):
        raise ConfigError(f"{path}: 'extends' must name a suite, e.g. extends = \"digits\".")
    base_path = _base_file(path, base_name)
    if base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: a suite cannot extend itself.")
    base = read_suite_file(base_path)
    if "extends" in base:
        raise ConfigError(f"{path}: extends '{base_name}', which extends another suite; extend the first one.")
    methods = [*table(base, "methods", str(base_path), list), *table(data_file, "methods", str(path), list)]
    return {**base, "description": data_file.get("description", base.get("description", "")), "methods": methods}, base_path


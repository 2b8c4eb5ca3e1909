"""``pxp-bench list`` and ``pxp-bench plugins``: the registered names of a kind, and the plugins that register them."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli.common import console, user_errors
from pxp_bench.errors import ConfigError

LIST_KINDS = ("models", "methods", "datasets", "optimizers", "executors", "tasks")


@user_errors
def list_names(
    kind: Annotated[str, typer.Argument(help="models, methods, datasets, optimizers, executors or tasks.")],
    pattern: Annotated[Optional[str], typer.Argument(help="fnmatch wildcard, e.g. 'digits-*'.")] = None,
) -> None:
    """List registered names of one kind, optionally filtered by a wildcard."""
    import difflib

    from pxp_bench.plugins import get_plugins

    if kind not in LIST_KINDS:
        close = difflib.get_close_matches(kind, LIST_KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"cannot list '{kind}'.{hint} Choose one of {', '.join(LIST_KINDS)}.")
    registry = getattr(get_plugins(), kind)
    table = Table(title=kind)
    table.add_column("name", style="bold")
    table.add_column("summary")
    if kind == "methods":
        table.add_column("components")
        table.add_column("parameters")
    table.add_column("plugin")
    for name in registry.names(pattern):
        spec = registry.get(name)
        row = [name, spec.summary]
        if kind == "methods":
            row += [", ".join(sorted(spec.components)),
                    "; ".join(f"{key} {p.describe()}" for key, p in spec.params.items()) or "-"]
        table.add_row(*row, registry.owner(name))
    console.print(table)


@user_errors
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON (every name).")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="List every registered name, not counts and the first few.")] = False,
) -> None:
    """Show the plugins, their versions, where they come from, what they register and which failed."""
    from dataclasses import asdict

    from pxp_bench.plugins import get_plugins

    loaded = get_plugins()
    loaded.collect_all()
    infos = list(loaded.infos.values())
    if as_json:
        typer.echo(json.dumps([{**asdict(info), "status": info.status} for info in infos], indent=2))
        return
    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "source", "status", "registers"):
        table.add_column(column)
    for info in infos:
        registers = "; ".join(_registrations(kind, names, show_all) for kind, names in info.registers.items())
        table.add_row(info.name, info.distribution, info.version, info.source, escape(info.status),
                      registers or "-")
    console.print(table)


SHOWN_NAMES = 6
"""`pxp-bench plugins` names this many of a kind before "…" (the model plugin registers every timm model)."""


def _registrations(kind: str, names: list[str], show_all: bool) -> str:
    """``kind: a, b, c``, or for a long list its count, the first names and where to see the rest."""
    if show_all or len(names) <= SHOWN_NAMES:
        return f"{kind}: {', '.join(names)}"
    return (f"{kind}: {len(names):,} ({', '.join(names[:SHOWN_NAMES])}, …; see `pxp-bench list {kind}` "
            "or --all)")


def register(app: typer.Typer) -> None:
    """Add `list` and `plugins` to the app."""
    app.command("list")(list_names)
    app.command()(plugins)

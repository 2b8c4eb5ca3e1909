"""The ``pxp-bench`` command line: one module per command (group), each with its options and its rendering.

``run.py`` (run, export), ``optimize.py``, ``suite.py`` (suite list, suite run), ``results.py``
(leaderboard, plot, compare), ``verify.py``, ``zoo.py`` (zoo train) and ``listing.py`` (list, plugins)
parse options, call the library and render with rich; what they share (option types, parsers, the
consoles, one-line errors and warnings, progress bars) is in ``common.py``, which imports no command
module, and what a long command does on a refusal or Ctrl-C in ``interrupts.py``. This module assembles the Typer ``app`` (the root callback, ``--version``, the commands,
those a plugin adds) and ``main``, the console script.

Heavy libraries (torch and everything above it) are imported inside the commands, so that
``pxp-bench --help`` stays fast. User errors print one line and exit with status 2; Python
warnings print as one ``Warning:`` line.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer

from pxp_bench.cli import listing, optimize, results, run, suite, verify, zoo
from pxp_bench.cli.common import console, print_error, show_warning
from pxp_bench.cli.interrupts import INTERRUPTED
from pxp_bench.errors import PxpBenchError

__all__ = ["app", "main"]

app = typer.Typer(
    name="pxp-bench",
    help="Benchmark attribution methods for pruning neural networks by explaining them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _commands in (run, optimize, listing, results, verify, zoo, suite):  # the order of `pxp-bench --help`
    _commands.register(app)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"pxp-bench {version('pxp-bench')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Benchmark attribution methods for pruning neural networks by explaining them."""
    warnings.showwarning = show_warning  # again here for apps invoked without main(), as in tests


_commands_before: list[int] = []


def _note_commands(_plugin: str) -> typer.Typer:
    """The app, for a plugin's ``register_commands``; remembers what it held before."""
    _commands_before[:] = [len(app.registered_commands), len(app.registered_groups)]
    return app


def _withdraw_commands(_plugin: str) -> None:
    """A plugin failed in ``register_commands``: drop the commands it added before raising."""
    del app.registered_commands[_commands_before[0]:], app.registered_groups[_commands_before[1]:]


def main() -> None:
    """Console-script entry point: loads plugin commands (failed plugins have none), then runs the app."""
    from pxp_bench.plugins import get_plugins

    warnings.showwarning = show_warning  # before loading plugins, which may warn
    try:
        get_plugins().call_each("register_commands", "app", _note_commands, on_failure=_withdraw_commands)
    except PxpBenchError as exc:
        print_error(str(exc))
        raise SystemExit(2) from None
    try:
        app()
    except SystemExit as exc:
        if exc.code == INTERRUPTED:  # said what is kept and cleaned up: nothing in the shutdown may hold the process
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(INTERRUPTED)
        raise

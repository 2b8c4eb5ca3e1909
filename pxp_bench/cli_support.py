"""What every command shares: the consoles, one-line errors (exit 2), one-line warnings, progress bars."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from pxp_bench.errors import ConfigError, PxpBenchError

console = Console()
err_console = Console(stderr=True)


def print_error(message: str) -> None:
    err_console.print(f"[bold red]Error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    print_error(message)
    raise typer.Exit(2)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line: Python's default adds the file and source line of the
    ``warnings.warn`` call, which tell a user nothing."""
    err_console.print(f"[yellow]Warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)


def user_errors(command):
    """Turn a `PxpBenchError` into one clear line on stderr and exit status 2, no traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PxpBenchError as exc:
            fail(str(exc))

    return wrapper


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2`` (of `optimize` and `suite run`) as a tuple of seeds in the one seed range
    (`pxp_bench.plan.MAX_SEED`); an empty item is refused, not dropped, since the list is shown as given."""
    from pxp_bench.plan import check_seed

    parts = [part.strip() for part in text.split(",")]
    if "" in parts:
        raise ConfigError(f"--seeds '{text}' has an empty item; write a comma list of integers such as 0,1,2.")
    try:
        seeds = tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(f"--seeds expects a comma list of integers such as 0,1,2, got '{text}'.") from None
    for seed in seeds:
        check_seed(seed, "--seeds")
    return seeds


class RichProgress:
    """Rich progress bars for the benchmark's stages."""

    def __init__(self, progress) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}
        self._totals: dict[str, int] = {}

    def start(self, stage: str, total: int) -> None:
        self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._totals[stage] = total

    def advance(self, stage: str, amount: int = 1) -> None:
        self._progress.advance(self._tasks[stage], amount)

    def finish(self, stage: str) -> None:
        self._progress.update(self._tasks[stage], completed=self._totals[stage])

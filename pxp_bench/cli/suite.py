"""``pxp-bench suite list`` and ``pxp-bench suite run``: the suites found; a suite's cells run with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli.common import (ClusterOption, CpusOption, GpusOption, MemGbOption, PartitionOption, TimeLimitOption,
                                  console, err_console, parse_seeds, slurm_options, user_errors)
from pxp_bench.errors import ConfigError, PxpBenchError

suite_app = typer.Typer(help="Standardized suites: a matrix of models, methods and seeds, run resumably "
                             "on this machine or a SLURM cluster.", no_args_is_help=True)


@suite_app.command("list")
@user_errors
def list_suites() -> None:
    """Show the suites pxp-bench finds and how many runs (cells) each holds."""
    from pxp_bench.plugins import get_plugins
    from pxp_bench.suites.definition import load_suite
    from pxp_bench.suites.files import available_suites, search_folders

    suites = available_suites()
    if not suites:
        raise ConfigError(f"no suite files found in {', '.join(map(str, search_folders())) or 'benchmarks/suites'}.")
    table = Table("suite", "cells", "settings x methods x seeds", "description", "file", title="suites")
    for name, path in suites.items():
        try:
            suite = load_suite(str(path), get_plugins(), require_params=False)
        except PxpBenchError as exc:
            table.add_row(name, "—", "—", f"[red]cannot be run here: {escape(str(exc))}[/]", str(path))
            continue
        shape = f"{suite.settings} x {suite.methods} x {len(suite.seeds)}"
        if suite.not_applicable:
            shape += f" ({suite.not_applicable} pairs n/a)"
        needs = f" [yellow]Needs {len(suite.missing)} parameters files first (`suite run` says how).[/]" if suite.missing else ""
        table.add_row(name, str(len(suite.cells)), shape, escape(suite.description) + needs, str(path))
    console.print(table)


@suite_app.command("run")
@user_errors
def run_suite_command(
    name: Annotated[str, typer.Argument(help="A suite name (`pxp-bench suite list`) or a path to a suite .toml.")],
    data: Annotated[Optional[Path], typer.Option(help="Dataset folder for every cell (e.g. ImageNet's root).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder: results, and cells/ with each cell's record and log. Default: suite-results/NAME.")] = None,
    executor: Annotated[str, typer.Option(help="Where cells run: local (this machine) or slurm (submitit), or a plugin's executor.")] = "local",
    jobs: Annotated[int, typer.Option(help="Cells running at once.")] = 1,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Run cells that failed before again.")] = False,
    seeds: Annotated[Optional[str], typer.Option(help="Replace the suite's seeds, e.g. 0,1 (a dry run).")] = None,
    only: Annotated[Optional[list[str]], typer.Option(help="Run only cells whose label matches this wildcard, e.g. 'resnet18/*' or '* lrp:* seed 0' (repeatable).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Replace a run option in every cell, e.g. --set image_size=64 --set weights=none (repeatable).")] = None,
    params_dir: Annotated[Optional[Path], typer.Option(help="Folder of the parameters files the suite names (default: beside the suite file).")] = None,
    partition: PartitionOption = None,
    gpus: GpusOption = None,
    time_limit: TimeLimitOption = None,
    array_size: Annotated[Optional[int], typer.Option(help="slurm: cells of the job array running at once (default: --jobs).")] = None,
    cpus: CpusOption = None,
    mem_gb: MemGbOption = None,
    cluster: ClusterOption = None,
    option: Annotated[Optional[list[str]], typer.Option(help="A plugin executor's option as key=value (repeatable).")] = None,
) -> None:
    """Run every cell of a suite that has not finished yet; a failing cell is recorded and the rest go on."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pxp_bench.plugins import get_plugins
    from pxp_bench.suites.definition import load_suite, select
    from pxp_bench.suites.fields import parse_overrides
    from pxp_bench.suites.runner import ELSEWHERE, run_suite

    options = slurm_options(partition=partition, gpus=gpus, time_limit=time_limit, array_size=array_size, cpus=cpus,
                            mem_gb=mem_gb, cluster=cluster)
    for pair in option or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--option {pair}: write it as key=value.")
        options[key.strip().replace("-", "_")] = value.strip()
    plugins = get_plugins()
    suite = select(load_suite(name, plugins, data=data, seeds=parse_seeds(seeds) if seeds is not None else None, overrides=parse_overrides(set_ or []),
                              params_dir=params_dir), only or [])
    out = out or Path("suite-results") / suite.name
    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console)
    bar = bars.add_task(f"suite {suite.name}", total=None)
    try:
        def started(pending: int) -> None:  # every check passed: a refusal is one line, without a bar
            bars.update(bar, total=pending)
            bars.start()

        def progressed(task, status: str) -> None:
            bars.advance(bar)
            if status == ELSEWHERE:
                bars.console.print(f"skipped (another suite run took it): {escape(task.cell.label)}", highlight=False)
            elif status != "done":
                bars.console.print(f"[red]failed:[/] {escape(task.cell.label)}", highlight=False)

        def status(text: str) -> None:  # a line per change: readable in a cluster job's log too
            bars.console.print(escape(text), highlight=False)

        report = run_suite(suite, out, plugins, executor=executor, jobs=jobs, options=options,
                           retry_failed=retry_failed, on_start=started, on_progress=progressed, on_status=status)
    finally:
        bars.stop()
    console.print(f"suite {suite.name}: {report.done} cells finished now, {report.finished_before} before, "
                  f"{len(report.failed)} failed, of {len(suite.cells)}; results in [bold]{out}[/]", highlight=False)
    if report.elsewhere:
        console.print(f"{len(report.elsewhere)} cells skipped: another suite run into {out} ran or is running them.",
                      highlight=False, soft_wrap=True)
    for label, error, log in report.failed:
        console.print(f"  [red]failed[/] {escape(label)}: {escape(error)} (log: {log})", highlight=False, soft_wrap=True)
    if report.failed:
        console.print("Rerun the failed cells with --retry-failed once their cause is fixed.")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `suite` group to the app."""
    app.add_typer(suite_app, name="suite")

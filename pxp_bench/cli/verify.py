"""``pxp-bench verify``: rerun records (all, or a seeded sample) and show which reproduce bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli.common import console, err_console, user_errors

STYLES = {"reproduced": "green", "differs": "bold red", "cannot rerun": "yellow"}


@user_errors
def verify(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files, or folders of them (their top-level *.json).", metavar="RESULT")],
    sample: Annotated[Optional[int], typer.Option(help="Rerun a seeded sample of this many records instead of all.")] = None,
    seed: Annotated[int, typer.Option(help="The seed of --sample's draw.")] = 0,
    strict: Annotated[bool, typer.Option("--strict", help="Also exit 1 when a record cannot be rerun here.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
) -> None:
    """Rerun records from what each records (method, parameters, seed, model and weights, dataset, rates,
    every option) and compare the reproduced curve, outcomes and metrics with the record's, bit for bit.

    A pass proves the record is what this code, with the same library versions on the same kind of device,
    computes; exit 1 when any record differs (with --strict, also when one cannot be rerun here).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pxp_bench.seeds import check_seed
    from pxp_bench.records.verify import CANNOT, DIFFERS, REPRODUCED, chosen_files, verify_files

    check_seed(seed)
    files, total = chosen_files(results, sample, seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bars:
        task = bars.add_task("rerunning", total=len(files))
        verdicts = verify_files(files, on_done=lambda verdict: bars.advance(task))
    counts = {status: sum(verdict.status == status for verdict in verdicts) for status in (REPRODUCED, DIFFERS, CANNOT)}
    if as_json:
        print(json.dumps({"checked": len(verdicts), "of": total, **{key.replace(" ", "_"): n for key, n in counts.items()},
                          "records": [{"file": str(v.path), "status": v.status, "detail": v.detail} for v in verdicts]},
                         indent=2))
    else:
        table = Table("record", "verdict", "detail", title=f"{len(verdicts)} of {total} records rerun")
        table.columns[0].overflow = "fold"
        for verdict in verdicts:
            table.add_row(escape(verdict.path.name), f"[{STYLES[verdict.status]}]{verdict.status}[/]",
                          escape(verdict.detail))
        console.print(table)
        console.print(f"{counts[REPRODUCED]} reproduced, {counts[DIFFERS]} differ, {counts[CANNOT]} cannot be rerun here",
                      highlight=False)
    if counts[DIFFERS] or (strict and counts[CANNOT]):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `verify` to the app."""
    app.command("verify")(verify)

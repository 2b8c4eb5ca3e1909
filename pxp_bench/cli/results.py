"""``pxp-bench leaderboard``, ``compare`` and ``plot``: tables, paired comparisons, and curve plots and layer
profiles of result files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pxp_bench.cli.common import console, counted, show_warning, user_errors


@user_errors
def leaderboard(
    results: Annotated[list[Path], typer.Argument(help="Folders of result JSON files (their top-level *.json).", metavar="DIR")],
    out: Annotated[Path, typer.Option(help="Folder for README.md and plots/*.png (rewritten exactly).")] = Path("leaderboard"),
    readme: Annotated[Optional[Path], typer.Option(help="Also fill the leaderboard markers of this file with the first table and its plot.")] = None,
    rates: Annotated[Optional[str], typer.Option(help="Only results on this grid; the others are kept out. Default: every grid, a table per grid.")] = None,
) -> None:
    """Write markdown tables of A_PR with 95 % intervals per dataset, model, components and grid, with
    accuracy-vs-sparsity plots, from the records that agree with themselves (curve from outcomes, metrics
    from curve, samples from seed); every JSON file left out is named with the reason."""
    from pxp_bench.leaderboard import collect_results, write_leaderboard
    from pxp_bench.rates import parse_rates

    collection = collect_results(results, rates=parse_rates(rates) if rates is not None else None)
    for entry in collection.kept_out:
        show_warning(f"kept out {entry.path}: {entry.reason}", UserWarning, "", 0)
    report = write_leaderboard(collection, out, readme=readme)
    counts = ", ".join(counted(n, noun) for n, noun in ((report.tables, "table"), (report.rows, "row"),
                                                       (len(report.plots), "plot")))
    updated = f"; filled the markers of {report.readme}" if report.readme else ""
    console.print(f"wrote [bold]{report.markdown}[/]: {counts}; {counted(len(report.kept_out), 'file')} kept "
                  f"out{updated}", highlight=False, soft_wrap=True)


@user_errors
def plot(
    results: Annotated[list[Path], typer.Argument(help="Result JSON files whose curves to overlay (or layer profile to draw).", metavar="RESULT")],
    out: Annotated[Optional[Path], typer.Option(help="The PNG to write (default curve.png, or profile.png with --profile).")] = None,
    profile: Annotated[bool, typer.Option("--profile", help="Draw the layer profile instead: per method, a heatmap of the fraction of each layer pruned at each rate (seeds averaged); the results must share model, components, dataset and grid.")] = False,
) -> None:
    """Overlay the accuracy-vs-sparsity curves of result files in one PNG, or (--profile) draw where each
    method prunes: the fraction of each layer pruned per rate, collapsed layers marked."""
    from pxp_bench.leaderboard import plot_profile_files, plot_result_files

    if profile:
        written = plot_profile_files(results, out if out is not None else Path("profile.png"))
    else:
        written = plot_result_files(results, out if out is not None else Path("curve.png"))
    console.print(f"wrote [bold]{written}[/]", highlight=False, soft_wrap=True)


@user_errors
def compare(
    first: Annotated[Path, typer.Argument(help="A result JSON file, or a folder of one method's results (one per seed).", metavar="A")],
    second: Annotated[Path, typer.Argument(help="The result(s) to compare A with, on the same seeds and samples.", metavar="B")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
) -> None:
    """Paired comparison of two results: A_PR of each, the difference A - B with its 95 % interval (a
    hierarchical bootstrap over seeds and class-stratified evaluation samples) and the probability that A
    keeps a random evaluation sample correct at more rates than B."""
    from pxp_bench.verdicts.compare import compare_sides, comparison_json, read_side

    sides = read_side(first), read_side(second)
    for entry in (entry for side in sides for entry in side.kept_out):
        show_warning(f"kept out {entry.path}: {entry.reason}", UserWarning, "", 0)
    found = compare_sides(*sides)
    if as_json:
        print(json.dumps(comparison_json(found), indent=2))
        return
    table = Table(title=f"paired over seeds {', '.join(map(str, found.seeds))} ({found.samples} evaluation samples)")
    for column in ("", "result", "A_PR (95 % CI)"):
        table.add_column(column)
    for name, side, estimate in (("A", found.first, found.a_pr[0]), ("B", found.second, found.a_pr[1])):
        table.add_row(name, escape(f"{side.label}\n{side.source}"),
                      f"{estimate.value:.4f} [{estimate.low:.4f}, {estimate.high:.4f}]")
    console.print(table)
    difference, improvement = found.difference, found.improvement
    console.print(f"A_PR difference A - B: {difference.value:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}]\n"
                  f"P(A improves on B): {improvement.value:.3f} [{improvement.low:.3f}, {improvement.high:.3f}] "
                  "(0.5 = no difference)\n"
                  f"Verdict: {found.verdict}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `leaderboard`, `plot` and `compare` to the app, in that order."""
    app.command()(leaderboard)
    app.command()(plot)
    app.command()(compare)

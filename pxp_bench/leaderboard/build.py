"""Writing a leaderboard folder: ``README.md`` and ``plots/*.png``, exactly regenerated from the results."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pxp_bench.errors import ConfigError
from pxp_bench.records import Collection, KeptOut, collect_results
from pxp_bench.leaderboard.findings import criteria_finding, summary_rows, table_finding
from pxp_bench.leaderboard.markdown import leaderboard_document, plot_names, summary_section
from pxp_bench.leaderboard.plots import summary_png, table_png, write_png
from pxp_bench.leaderboard.readme import read_marked, update_readme
from pxp_bench.leaderboard.tables import Table, group_tables
from pxp_bench.results import atomic_write_text, ensure_writable_dir

MARKDOWN_NAME = "README.md"
PLOTS_FOLDER = "plots"
SUMMARY_PLOT = "summary_improvement_over_lrp-epsilon.png"


@dataclass(frozen=True)
class LeaderboardReport:
    """What a build wrote and what it left out."""

    markdown: Path
    plots: tuple[Path, ...]
    tables: int
    rows: int
    kept_out: tuple[KeptOut, ...]
    readme: Path | None = None


def _no_results(collection: Collection) -> ConfigError:
    if not collection.kept_out:
        return ConfigError("no result to tabulate: the folders hold no result JSON file.")
    first = collection.kept_out[0]
    return ConfigError(f"no result to tabulate: each of the {len(collection.kept_out)} JSON files was kept out "
                       f"(first: {first.path}: {first.reason})")


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def _headline(tables: Sequence[Table], summary_plot: Path | None, markdown: Path, readme: Path) -> str:
    """The across-settings summary and each table's finding (all generated from the intervals), linked
    from ``readme``'s folder, and a link to the whole leaderboard."""
    here = Path(readme).parent
    full = _relative(markdown, here)
    summary = summary_section(tables, _relative(summary_plot, here) if summary_plot else None)
    findings = "\n".join(f"- **{table.title}**: {table_finding(table)}"
                         + (f" {criteria}" if (criteria := criteria_finding(table)) else "") for table in tables)
    return (f"{summary}\nPer table (rank 1 = not separable from the best by a paired 95 % interval):\n\n{findings}\n\n"
            f"All tables, with their intervals, plots, provenance, environments and the files kept out: "
            f"[{full}]({full})\n")


def _write_plots(tables: Sequence[Table], folder: Path) -> tuple[tuple[Path, ...], Path | None]:
    """One PNG per table and the across-settings summary's (None when nothing is compared with
    LRP-epsilon); PNGs in ``folder`` that were not written are removed, so the folder is exact."""
    names = plot_names(tables)
    written = tuple(write_png(folder / name, table_png(table)) for name, table in zip(names, tables))
    rows = summary_rows(tables)
    summary = (write_png(folder / SUMMARY_PLOT, summary_png(rows))
               if any(row.improvement is not None for row in rows) else None)
    for stale in sorted(set(folder.glob("*.png")) - set(written) - {summary}):
        stale.unlink()
    return written, summary


def write_leaderboard(collection: Collection, out: Path, *, readme: Path | None = None) -> LeaderboardReport:
    """Write ``out/README.md`` (one table per dataset, model and components) and ``out/plots/*.png``;
    with ``readme``, fill its leaderboard markers with the first table (checked before anything is written).
    """
    if not collection.results:
        raise _no_results(collection)
    if readme is not None:
        read_marked(readme)
    out = ensure_writable_dir(Path(out))
    tables = group_tables(collection.results)
    plots, summary_plot = _write_plots(tables, ensure_writable_dir(out / PLOTS_FOLDER))
    markdown = out / MARKDOWN_NAME
    document = leaderboard_document(collection, tables, [f"{PLOTS_FOLDER}/{plot.name}" for plot in plots],
                                    f"{PLOTS_FOLDER}/{SUMMARY_PLOT}" if summary_plot else None)
    try:
        atomic_write_text(markdown, document)
    except OSError as exc:
        raise ConfigError(f"cannot write {markdown} ({exc.strerror or exc}). Choose another --out.") from None
    if readme is not None:
        update_readme(readme, _headline(tables, summary_plot, markdown, readme))
    return LeaderboardReport(markdown, plots + ((summary_plot,) if summary_plot else ()), len(tables), sum(len(table.rows) for table in tables),
                             collection.kept_out, readme)


def build_leaderboard(result_dirs: Sequence[Path], out: Path, *, rates: Sequence[float] | None = None,
                      readme: Path | None = None) -> LeaderboardReport:
    """`collect_results` from ``result_dirs`` (held to grid ``rates`` where given), then `write_leaderboard`
    into ``out``."""
    return write_leaderboard(collect_results(result_dirs, rates=rates), out, readme=readme)

"""Writing a leaderboard folder: ``README.md`` and ``plots/*.png`` (per table its curves and its layer profile),
exactly regenerated from the results."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pxp_bench.errors import ConfigError
from pxp_bench.records import Collection, KeptOut, collect_results
from pxp_bench.leaderboard.findings import criteria_finding, summary_rows, table_finding
from pxp_bench.leaderboard.markdown import leaderboard_document, plot_names, profile_name, summary_section
from pxp_bench.leaderboard.plots import layers_problem, profile_png, summary_png, table_png, write_png
from pxp_bench.leaderboard.readme import read_marked, update_readme
from pxp_bench.leaderboard.conditions import without_inconsistent_recoveries
from pxp_bench.leaderboard.stability import SettingGroup, setting_groups, stability_finding
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


def _headline(tables: Sequence[Table], groups: Sequence[SettingGroup], summary_plot: Path | None, markdown: Path,
              readme: Path) -> str:
    """The across-settings summary, each table's finding and, per setting run under several conditions,
    whether its ordering survives them (all generated from the intervals), linked from ``readme``'s folder,
    and a link to the whole leaderboard."""
    here = Path(readme).parent
    full = _relative(markdown, here)
    summary = summary_section(tables, _relative(summary_plot, here) if summary_plot else None)
    findings = "\n".join(f"- **{table.title}**: {table_finding(table)}"
                         + (f" {criteria}" if (criteria := criteria_finding(table)) else "") for table in tables)
    survival = "".join(f"- **{group.setting}**: {stability_finding(group)}\n" for group in groups)
    if survival:
        survival = f"Does the ordering survive other conditions (Kendall tau, paired 95 % interval)?\n\n{survival}\n"
    return (f"{summary}\nPer table (rank 1 = not separable from the best by a paired 95 % interval):\n\n{findings}\n\n"
            f"{survival}All tables, with their intervals, plots, provenance, environments and the files kept out: "
            f"[{full}]({full})\n")


def table_profile(table: Table) -> bytes | None:
    """The layer profile of ``table``'s runs (`pxp_bench.leaderboard.plots.profile_png`: per row, the fraction
    of each layer pruned at each rate), or None where a run records no layers or the runs record different
    layer lists (nothing to draw on one grid of layers)."""
    runs = [run for row in table.rows for run in row.runs]
    if any(layers_problem(run) for run in runs) or len({tuple(run["layers"]) for run in runs}) > 1:
        return None
    return profile_png(runs, f"layer profile: {table.title}")


@dataclass(frozen=True)
class _Plots:
    curves: tuple[Path, ...]
    """One per table."""
    profiles: tuple[Path | None, ...]
    """One per table, None where it has no layer profile."""
    summary: Path | None

    @property
    def written(self) -> tuple[Path, ...]:
        return (*self.curves, *(path for path in self.profiles if path), *((self.summary,) if self.summary else ()))


def _write_plots(tables: Sequence[Table], folder: Path) -> _Plots:
    """Per table its curves' PNG and its layer profile's, and the across-settings summary's (None when nothing
    is compared with LRP-epsilon); PNGs in ``folder`` that were not written are removed, so the folder is exact."""
    names = plot_names(tables)
    curves = tuple(write_png(folder / name, table_png(table)) for name, table in zip(names, tables))
    profiles = tuple(None if (drawn := table_profile(table)) is None else write_png(folder / profile_name(name), drawn)
                     for name, table in zip(names, tables))
    rows = summary_rows(tables)
    summary = (write_png(folder / SUMMARY_PLOT, summary_png(rows))
               if any(row.improvement is not None for row in rows) else None)
    plots = _Plots(curves, profiles, summary)
    for stale in sorted(set(folder.glob("*.png")) - set(plots.written)):
        stale.unlink()
    return plots


def write_leaderboard(collection: Collection, out: Path, *, readme: Path | None = None) -> LeaderboardReport:
    """Write ``out/README.md`` (one table per dataset, model, components, grid and condition) and
    ``out/plots/*.png``; with ``readme``, fill its leaderboard markers with the headline (checked before
    anything is written). Records whose one-shot curve disagrees with itself are kept out
    (`pxp_bench.leaderboard.conditions`).
    """
    collection = without_inconsistent_recoveries(collection)
    if not collection.results:
        raise _no_results(collection)
    if readme is not None:
        read_marked(readme)
    out = ensure_writable_dir(Path(out))
    tables = group_tables(collection.results)
    groups = setting_groups(tables)
    plots = _write_plots(tables, ensure_writable_dir(out / PLOTS_FOLDER))
    summary_plot = plots.summary
    markdown = out / MARKDOWN_NAME
    document = leaderboard_document(collection, tables, [f"{PLOTS_FOLDER}/{plot.name}" for plot in plots.curves],
                                    f"{PLOTS_FOLDER}/{SUMMARY_PLOT}" if summary_plot else None, groups,
                                    [plot and f"{PLOTS_FOLDER}/{plot.name}" for plot in plots.profiles])
    try:
        atomic_write_text(markdown, document)
    except OSError as exc:
        raise ConfigError(f"cannot write {markdown} ({exc.strerror or exc}). Choose another --out.") from None
    if readme is not None:
        update_readme(readme, _headline(tables, groups, summary_plot, markdown, readme))
    return LeaderboardReport(markdown, plots.written, len(tables), sum(len(table.rows) for table in tables),
                             collection.kept_out, readme)


def build_leaderboard(result_dirs: Sequence[Path], out: Path, *, rates: Sequence[float] | None = None,
                      readme: Path | None = None) -> LeaderboardReport:
    """`collect_results` from ``result_dirs`` (held to grid ``rates`` where given), then `write_leaderboard`
    into ``out``."""
    return write_leaderboard(collect_results(result_dirs, rates=rates), out, readme=readme)

"""The leaderboard: per (dataset, model, components, grid, condition) a table of each method configuration's A_PR,
Top-PR and accuracies with 95 % bootstrap intervals and paired ranks (`pxp_bench.verdicts`), an across-settings
summary on the settings methods share, accuracy-vs-sparsity plots and layer profiles, and per setting run under
several conditions whether its ordering survives them, built from the records `pxp_bench.records` accepts; and
curve plots and layer profiles of any result files. `tables` groups records into tables and rows, `markdown`
writes the document, `findings` its generated sentences, `conditions` what a table of another condition than the
paper's protocol adds (and a recovery's one-shot check), `stability` the ordering's survival across conditions,
`provenance` the commits and studies behind it, `plots` the figures, `paper` the paper's published numbers
beside ImageNet tables, `readme` the README's headline block, and `build` writes it all."""

from pxp_bench.leaderboard.build import LeaderboardReport, build_leaderboard, write_leaderboard
from pxp_bench.records import Collection, KeptOut, collect_results
from pxp_bench.leaderboard.plots import (curves_png, plot_profile_files, plot_result_files, profile_png, table_png,
                                        write_png)
from pxp_bench.leaderboard.readme import README_END, README_START, update_readme
from pxp_bench.leaderboard.tables import Row, Table, group_tables, mean_sem

__all__ = [
    "Collection", "KeptOut", "LeaderboardReport", "README_END", "README_START", "Row", "Table",
    "build_leaderboard", "collect_results", "curves_png", "group_tables", "mean_sem", "plot_profile_files",
    "plot_result_files", "profile_png", "table_png", "update_readme", "write_leaderboard", "write_png",
]

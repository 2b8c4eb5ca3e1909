"""Tables from stored results: mean A_PR (± SEM) / Top-PR per (model, components, method, variant) over seeds."""

from __future__ import annotations

import json
import math
import re
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

from pxp_bench.errors import ConfigError
from pxp_bench.results import atomic_write_text, read_result

README_START = "<!-- leaderboard:start -->"
README_END = "<!-- leaderboard:end -->"


def load_results(folder: Path) -> list[dict]:
    """Every result JSON in ``folder``; each other JSON file is skipped with a warning saying why,
    so that a damaged or outdated result does not silently drop out of the table."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"results folder {folder} does not exist. Run `pxp-bench run --out {folder}` first.")
    results = []
    for path in sorted(folder.glob("*.json")):
        try:
            results.append(read_result(path))
        except ConfigError as exc:
            warnings.warn(f"skipped {path.name}: {exc}", UserWarning)
    if not results:
        raise ConfigError(f"no pxp-bench results in {folder}.")
    return results


def leaderboard_markdown(results: list[dict]) -> str:
    """A markdown table, best mean A_PR first within each model and component kind."""
    latest: dict[tuple, dict] = {}
    for result in results:  # only comparable runs share a row; a rerun of a seed replaces it
        key = (result["model"], result["components"], result["method"], result["variant"], result["dataset"],
               len(result["classes"]), tuple(result["rates"]), result["weights"],
               json.dumps(result["params"], sort_keys=True), result["seed"])
        if key not in latest or result["created"] >= latest[key]["created"]:
            latest[key] = result
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for key, result in latest.items():
        groups[key[:-1]].append(result)
    rows = []
    for (model, components, method, variant, *_), runs in groups.items():
        a_pr = [r["metrics"]["a_pr"] for r in runs]
        top_pr = [r["metrics"]["top_pr"] for r in runs]
        # the standard error of the mean, as the paper shades it
        spread = f" ± {statistics.stdev(a_pr) / math.sqrt(len(a_pr)):.3f}" if len(a_pr) > 1 else ""
        rows.append((model, components, -statistics.mean(a_pr), method, variant,
                     f"{statistics.mean(a_pr):.3f}{spread}", f"{statistics.mean(top_pr):.2f}",
                     ", ".join(str(s) for s in sorted({r["seed"] for r in runs}))))
    rows.sort()
    lines = ["| model | components | method | variant | A_PR (mean ± SEM) | Top-PR | seeds |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {m} | {c} | {method} | {variant} | {a_pr} | {top} | {seeds} |"
              for m, c, _, method, variant, a_pr, top, seeds in rows]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the leaderboard markers of ``readme`` with ``table``."""
    try:
        text = Path(readme).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {readme}: {exc.strerror or exc}.") from None
    pattern = re.compile(re.escape(README_START) + ".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        raise ConfigError(f"{readme} has no '{README_START}' ... '{README_END}' markers to fill.")
    replacement = f"{README_START}\n{table}{README_END}"
    atomic_write_text(Path(readme), pattern.sub(lambda _: replacement, text))

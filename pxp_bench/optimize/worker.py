"""A search-only worker of a study (``pxp-bench optimize --jobs N`` starts N - 1 of them): it runs trials
on the shared storage until the study holds its trials, and leaves the final evaluation to the command."""

from __future__ import annotations

import sys

import optuna

from pxp_bench.errors import PxpBenchError
from pxp_bench.optimize.study import config_from_json, run_study


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        run_study(config_from_json(sys.argv[1]), evaluate_best=False)
    except PxpBenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()

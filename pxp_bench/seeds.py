"""The range every seed option takes, checked in one place (runs, studies, suites, the zoo's training)."""

from __future__ import annotations

from pxp_bench.errors import ConfigError

MAX_SEED = 2**32 - 1
"""Every seed option takes 0 to this (numpy's generators refuse larger seeds)."""


def check_seed(seed: int, option: str = "--seed") -> int:
    """``seed`` itself, or a one-line error naming ``option`` when it is out of the seed range."""
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option} must be 0 or more and at most {MAX_SEED} (numpy's limit), got {seed}.")
    return seed

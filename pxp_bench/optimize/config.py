"""What a study runs: `StudyConfig` (a `Benchmark` template, its seeds and the search's options), the checks
on it made before anything is prepared or written, the study's name, and the configuration as JSON for a
worker process (`pxp_bench.optimize.worker`)."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from pxp_bench.conditions import condition_of
from pxp_bench.errors import ConfigError
from pxp_bench.optimize.storage import RDB_SCHEMES
from pxp_bench.plan import Benchmark, file_safe_model
from pxp_bench.seeds import check_seed

PRUNERS = ("median", "wilcoxon", "none")
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,199}")
"""A study name names its files in --out (journal, best parameters, provenance, plot): never a path."""


@dataclass
class StudyConfig:
    """What a study runs: a `Benchmark` template (its seed is replaced by each of ``seeds``) and the search."""

    bench: Benchmark
    seeds: tuple[int, ...] = (0,)
    optimizer: str = "optuna-tpe"
    trials: int = 50
    timeout: float | None = None
    storage: str | None = None
    """None: a journal file ``<out>/<study>.journal``; or an RDB URL (``postgresql://...``, ``sqlite:///...``)."""
    study: str | None = None
    out: Path = Path("results")
    pruner: str = "wilcoxon"
    """How clearly worse trials are stopped mid-curve (`pxp_bench.optimize.study._pruner`): ``median``,
    ``wilcoxon`` or ``none``."""
    heartbeat_s: int = 20
    grace_s: int = 60
    """A running trial's process beats every ``heartbeat_s`` (journal or RDB); a running trial silent for
    ``grace_s`` (its process died) is failed and retried by the next trial started on the study."""
    reuse: bool = True
    """Evaluate each pruned set once per seed (exact); off only to measure what it saves."""
    worker: int = 0
    """Which of several local workers this is (``--jobs``): offsets the sampler's seed so that workers
    do not propose the same sequence."""


def study_name(config: StudyConfig, plan_components: str, method: str) -> str:
    """``--study``, or one made of the model (each run of other characters a ``-``), components, method and
    seeds; refused unless a plain name."""
    seeds = "-".join(map(str, config.seeds))
    made = config.study is None
    condition = condition_of(config.bench)
    suffix = "" if condition.is_paper else "_" + re.sub(r"[^A-Za-z0-9]+", "-", condition.label)  # studies of one
    name = (f"{file_safe_model(config.bench.model)}_{plan_components}_{method}_seeds{seeds}{suffix}"  # setting
            if made else config.study)                                                     # and condition share it
    if not STUDY_NAME.fullmatch(name):
        made = " (made from the model, components, method and seeds; give --study)" if made else ""
        raise ConfigError(f"study name '{name}'{made} is not a plain name: it names the study's files in --out, so "
                          "use 1 to 200 letters, digits and _ . + = , @ - (a letter, digit or _ first), no path.")
    return name


def check_config(config: StudyConfig) -> None:
    """Refuse an option a study cannot run with, before anything is prepared or written."""
    if isinstance(config.trials, bool) or not isinstance(config.trials, int) or config.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {config.trials}.")
    if config.timeout is not None and not (math.isfinite(config.timeout) and config.timeout > 0):
        raise ConfigError(f"--timeout must be a positive, finite number of seconds, got {config.timeout}.")
    if not config.seeds or len(set(config.seeds)) != len(config.seeds):
        raise ConfigError(f"--seeds must be distinct integers, got {list(config.seeds)}.")
    for seed in config.seeds:
        check_seed(seed, "--seeds")
    if config.pruner not in PRUNERS:
        raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got '{config.pruner}'.")
    if config.bench.tune_per_class < 1:
        raise ConfigError("a study needs a tuning set: --tune-per-class must be at least 1.")
    if config.bench.scores_file is not None:
        raise ConfigError("a study scores every configuration itself; drop --scores.")
    if config.storage is not None and config.storage.split(":", 1)[0].split("+", 1)[0] not in RDB_SCHEMES:
        raise ConfigError(f"--storage '{config.storage}' is not a database URL; use postgresql://USER@HOST/DB, "
                          "sqlite:///FILE.db, or leave it out for a journal file in --out.")


def config_to_json(config: StudyConfig) -> str:
    """``config`` as JSON, for a worker process (`pxp_bench.optimize.worker`)."""
    return json.dumps(dataclasses.asdict(config), default=str)


def config_from_json(text: str) -> StudyConfig:
    values = json.loads(text)
    bench = values.pop("bench")
    bench["rates"] = tuple(bench["rates"])
    bench["data_root"] = Path(bench["data_root"]) if bench["data_root"] else None
    return StudyConfig(Benchmark(**bench), **{**values, "seeds": tuple(values["seeds"]), "out": Path(values["out"])})

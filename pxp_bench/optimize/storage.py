"""Where a study's trials are kept, and opening one: the storage (a journal file in --out, or an RDB for
workers on several machines, either with heartbeats so that a dead worker's trial is retried), the
study's identity (a stored study made for another setting is refused, one made for this setting is
resumed), and the storage as shown in messages and provenance (without its password)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import optuna

from pxp_bench.conditions import condition_of
from pxp_bench.errors import ConfigError

if TYPE_CHECKING:
    from pxp_bench.prepare import Prepared
    from pxp_bench.params import ParamSpace

IDENTITY_ATTR = "pxp_bench_identity"
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
REPORTS = "accuracy per (seed, rate) step"
"""What a trial reports to the pruner (part of a study's identity: a study whose trials reported
otherwise cannot be resumed with this pruner)."""
RETRIES = 3
"""A trial whose worker died (silent past the grace period) is retried at most this often."""
SCHEMA_ATTEMPTS = 3
"""Workers that open a fresh database at the same moment race to create Optuna's tables (a unique
violation in PostgreSQL's catalogue); the loser opens the storage again, the tables then exist."""


def study_identity(prepared: Prepared, space: ParamSpace, seeds: Sequence[int], pruner: str) -> dict[str, Any]:
    """What a study is about; a stored study with another identity is refused."""
    bench, condition = prepared.bench, condition_of(prepared.bench)
    return {
        "method": prepared.plan.method.name, "model": prepared.plan.model.name, "weights": prepared.loaded.weights,
        "dataset": prepared.plan.dataset.name, "components": prepared.plan.components,
        "space": {key: param.describe() for key, param in sorted(space.items())},
        "fixed": {key: value for key, value in sorted(prepared.plan.params.items()) if key not in space},
        "seeds": list(seeds), "classes": bench.n_classes, "ref_per_class": bench.ref_per_class,
        "tune_per_class": bench.tune_per_class, "rates": list(prepared.rates),
        "pruner": pruner, "reports": REPORTS,
        **({} if condition.is_paper else {"condition": condition.description}),  # the paper's: as studies made
    }                                                                           # before conditions existed


def open_storage(url: str | None, default_path: Path, heartbeat_s: int = 20, grace_s: int = 60):
    """A journal file (safe for several local processes; refused when damaged) or an RDB, either with
    heartbeats: a trial whose process died is failed and retried (`RETRIES`)."""
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    from pxp_bench.optimize.journal import HeartbeatJournalStorage, check_journal

    try:
        if url is None:
            check_journal(default_path)
            return HeartbeatJournalStorage(default_path, heartbeat_s, grace_s, RETRIES)
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():  # Optuna marks its heartbeat experimental; it is what we rely on
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    retry = RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)
                    return RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                                      heartbeat_stale_trial_callback=retry)
            except Exception as exc:  # workers racing to create a fresh database's tables: one loses
                if "IntegrityError" not in type(exc).__name__ or attempt == SCHEMA_ATTEMPTS - 1:
                    raise
                time.sleep(0.5 * (attempt + 1))
    except ConfigError:
        raise
    except Exception as exc:  # SQLAlchemy / driver / file errors: one line
        reason = (str(exc).splitlines() or [""])[0].rstrip(".")
        raise ConfigError(f"cannot open the study storage {url or default_path}: {type(exc).__name__}: {reason}. "
                          "Check the URL, the server and its driver (for PostgreSQL: pip install "
                          "'pxp-bench[postgres]').") from None


def open_study(storage, name: str, identity: dict[str, Any]) -> optuna.Study:
    """The study ``name`` in ``storage``: created with ``identity``, or resumed if it was made with it."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    stored = study.user_attrs.get(IDENTITY_ATTR)
    if stored is None:
        study.set_user_attr(IDENTITY_ATTR, identity)
    elif stored != identity:
        differing = sorted(key for key in set(stored) | set(identity) if stored.get(key) != identity.get(key))
        raise ConfigError(f"study '{name}' was created for another setting (differs in {', '.join(differing)}). "
                          "Use another --study name, or the original options.")
    return study


def storage_label(url: str | None) -> str:
    """``journal``, or the RDB URL without its password (in the user part or the query)."""
    if url is None:
        return "journal"
    from sqlalchemy.engine import make_url

    return make_url(url)._replace(password=None).difference_update_query(["password"]).render_as_string(
        hide_password=False)

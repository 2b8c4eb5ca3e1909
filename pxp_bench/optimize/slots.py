"""Trial slots: the processes sharing a study (``pxp-bench optimize --jobs N``, workers on other machines)
start a trial only while the study holds fewer than ``--trials`` finished and running trials, so that
they stop together at exactly ``--trials`` finished trials.

Counting finished trials after each trial is not enough: when 4 of 5 trials are finished, two workers
that each see 4 both start one, and the study ends with 6. Here a process claims its slot before its
trial exists: under a lock that every process of the study takes (`slot_lock`), it counts the finished
and running trials and creates (or pops) its trial only if one is still missing, so that a running
trial holds its slot. A process refused because other processes' trials are running waits for them: if
they finish, the study is full and it stops; if one fails (its process died: failed by the heartbeat
check after the grace period, or interrupted), the slot is free again and it is claimed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna

COMPLETE, PRUNED, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                             optuna.trial.TrialState.RUNNING)
FINISHED = (COMPLETE, PRUNED)
POLL_S = 0.5
"""How often a process refused a slot looks again at the trials that hold them."""


class StudyFull(Exception):
    """Raised by a claiming ``study.ask`` when the study holds its trials (or the timeout passed): ends
    the optimizer's loop before a trial is created."""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (a file or a folder), released when the block ends or the process
    dies. Never a POSIX (``fcntl``) lock: those a process loses on closing any descriptor of the file."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _lock_key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"pxp-bench slots {name}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def _database_lock(engine, name: str) -> Iterator[None]:
    """A lock the database server holds for the session: PostgreSQL's advisory lock, MySQL's named lock;
    released when the block ends or the connection is lost."""
    from sqlalchemy import text

    with engine.connect() as connection:
        if engine.name == "postgresql":
            take, give = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
            values: dict[str, Any] = {"key": _lock_key(name)}
        else:  # mysql: names of at most 64 characters
            take, give = "SELECT GET_LOCK(:key, -1)", "SELECT RELEASE_LOCK(:key)"
            values = {"key": f"pxp_bench_{_lock_key(name) & (2**63 - 1):x}"}
        connection.execute(text(take), values)
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text(give), values)
            connection.commit()


def slot_lock(storage, name: str, journal: Path | None) -> Callable[[], contextlib.AbstractContextManager]:
    """The lock under which every process of study ``name`` claims its trial slots: a ``flock`` on the journal
    file, or on a SQLite database's folder (its file carries SQLite's own POSIX locks), or the database
    server's lock. Within one process a thread lock serialises the threads too."""
    threads = threading.Lock()
    if journal is not None:
        outer = lambda: _file_lock(journal)  # noqa: E731
    else:
        engine = storage.engine
        database = engine.url.database
        if engine.name == "sqlite":
            local = database not in (None, "", ":memory:") and not database.startswith("file::memory:")
            folder = Path(database).resolve().parent if local else None
            outer = (lambda: _file_lock(folder)) if folder is not None else contextlib.nullcontext  # noqa: E731
        elif engine.name in ("postgresql", "mysql"):
            outer = lambda: _database_lock(engine, name)  # noqa: E731
        else:  # a database without a lock we know: the count alone, approximate across processes
            outer = contextlib.nullcontext

    @contextlib.contextmanager
    def held() -> Iterator[None]:
        with threads, outer():
            yield

    return held


def claim_slots(study: optuna.Study, trials: int, lock: Callable[[], contextlib.AbstractContextManager],
                deadline: float | None = None) -> Callable[[], None]:
    """Make ``study.ask`` (which ``study.optimize`` calls for each trial, as an optimizer calling it itself
    does) claim a slot of the ``trials`` first, waiting while other processes' running trials hold the
    last ones; it raises `StudyFull` once the study holds its finished trials, or at ``deadline``
    (``time.monotonic()``). Returns the function that gives ``study.ask`` back."""
    ask = study.ask

    def claiming_ask(*args, **kwargs) -> optuna.Trial:
        waited = False
        while True:
            with lock():
                if waited:  # a process that died mid-trial holds its slot until its trial is failed as stale
                    _fail_stale(study)
                finished = len(study.get_trials(deepcopy=False, states=FINISHED))
                running = len(study.get_trials(deepcopy=False, states=(RUNNING,)))
                if finished + running < trials:
                    return ask(*args, **kwargs)
            if finished >= trials or (deadline is not None and time.monotonic() >= deadline):
                raise StudyFull()
            waited = True
            time.sleep(POLL_S)

    study.ask = claiming_ask

    def restore() -> None:
        del study.ask  # the instance attribute: Study.ask again

    return restore


def _fail_stale(study: optuna.Study) -> None:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        with warnings.catch_warnings():  # experimental in Optuna; its behaviour is what we rely on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)

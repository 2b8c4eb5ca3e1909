"""The journal file a study lives in by default: checked before it is opened, with heartbeats for its trials.

Optuna's journal is an append-only file of JSON lines that several local processes share under a lock.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # how a storage joins Optuna's heartbeat (RDBStorage does)
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from pxp_bench.errors import ConfigError

HEARTBEAT_ATTR = "pxp_bench_heartbeat"
"""System attribute of a running trial: when its process last said it was alive (seconds since the epoch)."""


def check_journal(path: Path) -> None:
    """Refuse a damaged journal before Optuna opens it, and so before anything is written to it.

    Optuna reads a last line without its newline as a write in progress and appends after it, which
    buries a line cut by a crash in the middle of the file, where every later read fails. Holding the
    lock every append takes (the backend's default lock on the same file), no write is in progress:
    a line without its newline, or one that is not a JSON object, is damage.
    """
    if not path.exists():
        return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        with path.open("rb") as journal:
            for number, line in enumerate(journal, start=1):
                if not line.endswith(b"\n"):
                    _damaged(path, number, "is cut short (a crash while it was written)")
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    _damaged(path, number, "is not a journal record")
    except OSError as exc:
        raise ConfigError(f"cannot read the study journal {path}: {exc.strerror or exc}.") from None
    finally:
        lock.release()


def _damaged(path: Path, number: int, what: str) -> None:
    raise ConfigError(f"the study journal {path} is damaged: line {number} {what}. Nothing was written to it; "
                      f"remove that line to resume the study (a cut last line holds no finished trial), "
                      f"or start a new study with another --study or --out.")


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal whose running trials beat, as an RDB's do: Optuna's own mechanism, on a journal file.

    A process killed mid-trial (SIGKILL, the OOM killer, a lost machine) leaves its trial RUNNING for
    ever in a journal, which has no heartbeat of its own. Here Optuna's heartbeat thread records the
    time in the trial every ``heartbeat_s`` while the objective runs, and before each trial Optuna fails
    the running trials silent for more than ``grace_s`` and retries each once more with the same
    parameters (`RetryHeartbeatStaleTrialCallback`), as it does for an RDB.
    """

    def __init__(self, path: Path, heartbeat_s: int, grace_s: int, max_retry: int) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self._heartbeat_s, self._grace_s = heartbeat_s, grace_s
        with warnings.catch_warnings():  # experimental since Optuna 2.8 and stable in use; we need its behaviour
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())
        except UpdateFinishedTrialError:  # failed as stale by another process while this one was stopped
            pass

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # a retried trial copies its failed trial's attributes: its own start counts as a beat too
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return [trial._trial_id for trial in running
                if now - max(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0), trial.datetime_start.timestamp())
                > self._grace_s]

    def get_heartbeat_interval(self) -> int:
        return self._heartbeat_s

    def get_heartbeat_stale_trial_callback(self) -> RetryHeartbeatStaleTrialCallback:
        return self._retry

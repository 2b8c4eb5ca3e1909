"""The run record: a JSON document per run, its environment metadata, and atomic writing."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pxp_bench.errors import ConfigError, StorageError

SCHEMA_VERSION = 2
PROTOCOL_VERSION = 2
RECORDED_PACKAGES = ("torch", "torchvision", "timm", "zennit", "lxt", "captum")


TEMPORARY_PREFIX = ".pxp-tmp"
"""Temporary files are hidden ``.pxp-tmp.<host>.<pid>.<random>.tmp``: never mistaken for results, and
removable once the process that made them is gone."""
RESCUE_ENV = "PXP_BENCH_RESCUE_DIR"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def _temporary_file(folder: Path) -> tuple[int, str]:
    """A new temporary file in ``folder``, named after this host and process."""
    return tempfile.mkstemp(dir=folder, prefix=f"{TEMPORARY_PREFIX}.{_host()}.{os.getpid()}.", suffix=".tmp")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


STALE_AFTER_S = 600
"""A temporary file is only removed when its process is gone *and* it is older than this: a process of
another PID namespace on the same host name must not lose a file it is still writing."""


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files in ``folder`` left by killed processes of this host; returns them."""
    pattern = re.compile(rf"^{re.escape(TEMPORARY_PREFIX)}\.{re.escape(_host())}\.(\d+)\..*\.tmp$")
    removed = []
    for entry in Path(folder).iterdir():
        found = pattern.match(entry.name)
        if (found and int(found.group(1)) != os.getpid() and not _process_alive(int(found.group(1)))
                and time.time() - entry.stat().st_mtime > STALE_AFTER_S):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def ensure_writable_dir(path: Path, option: str = "--out") -> Path:
    """Create ``path`` if needed and prove it is writable, before any long work starts; errors name
    ``option``, the option that chose the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output folder {path} is not writable: it cannot be created ({exc.strerror or exc}). "
                          f"Choose another {option}.") from None
    try:
        fd, probe = _temporary_file(path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:  # e.g. /proc/self: a folder, but not one files can be created in
        raise ConfigError(f"output folder {path} is not a writable folder: creating a file in it failed "
                          f"({exc.strerror or exc}). Choose another {option}.") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_copy(path: Path, data: bytes) -> str:
    """``data`` in a fully written, readable temporary file beside ``path``; returns its name."""
    fd, temporary = _temporary_file(path.parent)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return temporary


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never half."""
    path = Path(path)
    temporary = _temporary_copy(path, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_new_file(path: Path, data: bytes) -> bool:
    """Atomically create ``path`` with ``data`` unless it exists (then False: nothing is touched)."""
    path = Path(path)
    temporary = _temporary_copy(path, data)
    try:
        os.link(temporary, path)  # fails if path exists: two runs can never overwrite each other
        return True
    except FileExistsError:
        return False
    finally:
        Path(temporary).unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


OUTSIDE_THE_CODE = (":(exclude)leaderboard", ":(exclude,glob)**/*.md", ":(exclude)docs")
"""Changes that cannot alter a result and do not make a tree dirty: the published leaderboard (which
`make leaderboard-fresh` deletes and rewrites while its runs record this state) and the documentation."""


def _git_state() -> dict[str, Any]:
    """The pxp-bench checkout's commit and dirty flag (uncommitted changes to tracked files other than
    `OUTSIDE_THE_CODE`), when the package runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {"git_sha": None, "git_dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *OUTSIDE_THE_CODE], cwd=root,
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}
    return {"git_sha": sha, "git_dirty": bool(status.strip())}


def environment(device_name: str) -> dict[str, Any]:
    """Versions, device and checkout state recorded with every result."""
    return {
        "python": platform.python_version(),
        "pxp_bench": _version("pxp-bench"),
        **{package: _version(package) for package in RECORDED_PACKAGES},
        "device": device_name,
        "platform": platform.platform(),
        **_git_state(),
    }


@dataclass
class Result:
    """One run of the benchmark: what ran, on what, and the pruning curve it produced."""

    method: str
    variant: str
    model: str
    dataset: str
    components: str
    params: dict[str, Any]
    seed: int
    classes: list[int]
    rates: list[float]
    curve: list[dict[str, Any]]
    metrics: dict[str, float | None]
    layers: dict[str, list[float]]
    timings: dict[str, float]
    environment: dict[str, Any]
    weights: str
    samples: dict[str, Any] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    """What scoring and discovery report: ``near_zero_logits_skipped`` (0 where nothing was skipped or
    the method never divides by a logit), ``excluded_attention``."""
    outcomes: dict[str, Any] | None = None
    """Which evaluation samples were classified correctly at each rate (`pxp_bench.outcomes`): what the
    leaderboard's intervals and paired comparisons are computed from."""
    scores_source: str | None = None
    """The saved-scores file this run evaluated, when it did not score itself."""
    optimisation: dict[str, Any] | None = None
    """For ``variant: optimised``: the study, trial, optimizer, seeds and tuning A_PR it came from."""
    scores_file: str | None = None
    """The scores this run saved beside its JSON (``--save-scores``)."""
    agreement: dict[str, Any] | None = None
    """With ``--agreement``: Spearman's rho and pruned-set overlaps of the scores with ablation's on the
    same reference set (`pxp_bench.agreement`)."""
    options: dict[str, Any] | None = None
    """The run's options as given (`pxp_bench.plan.run_options`: weights, data, classes, samples per class,
    batch size, device, autocast, evaluation mode, per-layer cap, ...): with the fields above, what
    `pxp-bench verify` reruns and what the sample sets are redrawn from (`pxp_bench.records`)."""
    recovery: dict[str, Any] | None = None
    """With ``--recover`` (`pxp_bench.recovery`): its kind, steps, samples (count and hash) and seconds, and the
    one-shot curve of the same pruned sets with its metrics (``oneshot``); the record's own curve, metrics and
    outcomes are the recovered ones."""
    rescoring: dict[str, Any] | None = None
    """With ``--schedule iterative``: the seconds each rate's re-scoring took (``seconds_per_rate``)."""
    evaluate: str = "masked"
    """How the curve was evaluated: ``slim`` (physically slimmed copies, with efficiency per rate) or
    ``masked``; the counts are the same either way."""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION
    protocol_version: int = PROTOCOL_VERSION
    scores: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    """The component scores (tensors; not part of the JSON record)."""
    scored: Any = field(default=None, repr=False, compare=False)
    """The `Components` the scores belong to (not part of the JSON record)."""

    def to_dict(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scores", "scored")}
        return json.loads(json.dumps(record))

    def scores_metadata(self) -> dict[str, Any]:
        keys = ("model", "weights", "components", "method", "variant", "params", "seed", "classes")
        return {key: getattr(self, key) for key in keys}

    def file_stem(self) -> str:
        stamp = re.sub(r"[^0-9]", "", self.created)[:14]
        raw = f"{self.model}_{self.components}_{self.method}-{self.variant}_{self.dataset}_seed{self.seed}_{stamp}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def _claim_and_write(result: Result, out_dir: Path, scores: bytes | None) -> Path:
    """Claim a free ``<stem>[-N].json`` together with its ``.scores.safetensors`` companion.

    The companion is claimed first (``os.link`` never replaces a file), then the JSON that names it; if
    another run took the JSON name in between, our companion is removed and the next name is tried.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    stem = result.file_stem()
    for counter in range(1, 10_000):
        name = stem if counter == 1 else f"{stem}-{counter}"
        path, scores_path = out_dir / f"{name}.json", out_dir / f"{name}.scores.safetensors"
        if path.exists():
            continue
        if scores is not None:
            if not create_new_file(scores_path, scores):
                continue  # an orphaned companion: leave it, take the next name
            result.scores_file = scores_path.name
        try:
            if create_new_file(path, (json.dumps(result.to_dict(), indent=2) + "\n").encode()):
                return path
        except BaseException:
            if scores is not None:  # never leave a companion without its JSON
                scores_path.unlink(missing_ok=True)
                result.scores_file = None
            raise
        if scores is not None:
            scores_path.unlink(missing_ok=True)
            result.scores_file = None
    raise ConfigError(f"could not find a free result name for {stem} in {out_dir}.")


def rescue_folder() -> Path:
    """Where a result goes when its folder cannot take it: ``$PXP_BENCH_RESCUE_DIR``, or a folder of this
    user's in the temp dir (private: other users can neither block nor read it)."""
    if os.environ.get(RESCUE_ENV):
        return Path(os.environ[RESCUE_ENV])
    folder = Path(tempfile.gettempdir()) / f"pxp-bench-rescued-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid():
        raise PermissionError(13, "owned by another user", str(folder))
    return folder


def write_result(result: Result, out_dir: Path, *, save_scores: bool = False) -> Path:
    """Write ``result`` as JSON into ``out_dir`` atomically; never overwrites an earlier run.

    With ``save_scores``, the scores go to ``<result stem>.scores.safetensors`` beside it. If the folder
    cannot take the files (disk full, permission revoked), they go to `rescue_folder` and a
    `StorageError` names both places: a finished result is never lost.
    """
    scores = None
    if save_scores:
        from pxp_bench.scores import encode_scores

        scores = encode_scores(result.scored, result.scores, result.scores_metadata())
    try:
        return _claim_and_write(result, Path(out_dir), scores)
    except OSError as exc:
        failure = f"{exc.filename or out_dir}: {exc.strerror or exc}"
    try:
        rescued = _claim_and_write(result, rescue_folder(), scores)
    except OSError as exc:
        raise StorageError(f"could not write the result ({failure}), nor into the rescue folder "
                           f"({exc.filename or rescue_folder()}: {exc.strerror or exc}). Set {RESCUE_ENV} to a "
                           "writable folder and rerun.") from None
    raise StorageError(f"could not write the result ({failure}); it was saved to {rescued} instead. Fix the "
                       f"output folder and move the file there.")


def read_result(path: Path) -> dict[str, Any]:
    """Read a stored result, refusing files that are not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"result {path} is unreadable: {exc}.") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"{path} is not a pxp-bench result of schema version {SCHEMA_VERSION}.")
    required = [f.name for f in fields(Result) if f.default is MISSING and f.default_factory is MISSING]
    missing = [key for key in required if key not in data]
    missing += [f"metrics.{key}" for key in ("a_pr", "top_pr") if key not in (data.get("metrics") or {})]
    if missing:
        raise ConfigError(f"result {path} lacks {', '.join(missing)}: it is damaged or was not written by pxp-bench.")
    return data

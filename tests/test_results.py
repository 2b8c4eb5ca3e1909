from __future__ import annotations

import json
import os
import time

import pytest

from pxp_bench.errors import ConfigError, StorageError
from pxp_bench.results import (
    PROTOCOL_VERSION,
    RESCUE_ENV,
    SCHEMA_VERSION,
    Result,
    atomic_write_text,
    ensure_writable_dir,
    environment,
    read_result,
    remove_stale_temporaries,
    write_result,
)


def _result(**overrides) -> Result:
    fields = dict(method="taylor", variant="default", model="timm/vit_tiny", dataset="digits",
                  components="filters", params={}, seed=0, classes=[0, 1], rates=[0.0], curve=[],
                  metrics={"a_pr": 0.5, "top_pr": 0.1}, layers={}, timings={}, environment={}, weights="random")
    return Result(**(fields | overrides))


def test_results_are_written_atomically_and_never_overwritten(tmp_path):
    result = _result()
    first = write_result(result, tmp_path / "out")
    second = write_result(result, tmp_path / "out")
    assert first != second and first.parent == second.parent
    assert "/" not in first.name.replace(str(tmp_path), "") and first.name.startswith("timm-vit_tiny_filters_taylor")
    stored = read_result(first)
    assert stored["schema_version"] == SCHEMA_VERSION and stored["protocol_version"] == PROTOCOL_VERSION == 2
    assert sorted(p.name for p in first.parent.iterdir()) == sorted([first.name, second.name])


def test_atomic_write_replaces_whole_files(tmp_path):
    path = tmp_path / "file.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["file.json"]


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="not writable.*--out"):
        ensure_writable_dir(blocker / "results")


def test_reading_something_that_is_not_a_result(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="not a pxp-bench result"):
        read_result(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ConfigError, match="unreadable"):
        read_result(tmp_path / "y.json")
    record = json.loads(write_result(_result(), tmp_path / "out").read_text())
    del record["seed"], record["diagnostics"]  # diagnostics has a default: an older record may lack it
    record["metrics"] = {}
    (tmp_path / "z.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="lacks seed, metrics.a_pr, metrics.top_pr: it is damaged"):
        read_result(tmp_path / "z.json")


def test_environment_records_versions_and_checkout():
    env = environment("cpu")
    assert {"python", "torch", "torchvision", "timm", "zennit", "lxt", "captum", "device",
            "git_sha", "git_dirty"} <= set(env)
    assert env["torch"] and env["device"] == "cpu"


def _dead_pid() -> int:
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    return int(finished.stdout)


def test_temporaries_of_dead_processes_are_cleaned_and_never_read_as_results(tmp_path):
    from pxp_bench.leaderboard import collect_results
    from pxp_bench.results import TEMPORARY_PREFIX, _host

    dead = tmp_path / f"{TEMPORARY_PREFIX}.{_host()}.{_dead_pid()}.abc123.tmp"
    alive = tmp_path / f"{TEMPORARY_PREFIX}.{_host()}.{os.getppid()}.def456.tmp"
    other_host = tmp_path / f"{TEMPORARY_PREFIX}.elsewhere.{_dead_pid()}.ghi789.tmp"
    recent_dead = tmp_path / f"{TEMPORARY_PREFIX}.{_host()}.{_dead_pid()}.jkl012.tmp"
    for path in (dead, alive, other_host, recent_dead):
        path.write_text("{half a result")
    an_hour_ago = time.time() - 3600
    for path in (dead, alive, other_host):
        os.utime(path, (an_hour_ago, an_hour_ago))
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert alive.exists() and other_host.exists() and recent_dead.exists()
    written = write_result(_result(), tmp_path)  # the leftovers are never read as results
    looked_at = collect_results([tmp_path]).kept_out  # (this bare record is kept out of tables: too few fields)
    assert [entry.path for entry in looked_at] == [written] and written.exists()


def test_a_failed_write_rescues_the_result_and_names_both_places(tmp_path, monkeypatch):
    monkeypatch.setenv(RESCUE_ENV, str(tmp_path / "rescued"))
    out = tmp_path / "out"
    out.write_text("the output folder was replaced by a file while the run was going")
    with pytest.raises(StorageError, match=f"{out}.*saved to {tmp_path / 'rescued'}/timm-vit_tiny") as caught:
        write_result(_result(), out)
    assert "\n" not in str(caught.value)
    rescued = list((tmp_path / "rescued").glob("*.json"))
    assert len(rescued) == 1 and read_result(rescued[0])["model"] == "timm/vit_tiny"


def test_a_rescue_that_fails_too_says_so(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(RESCUE_ENV, str(blocker / "rescued"))
    with pytest.raises(StorageError, match=f"nor into the rescue folder.*Set {RESCUE_ENV}"):
        write_result(_result(), blocker / "out")

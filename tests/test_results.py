from __future__ import annotations

import json

import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.results import (
    SCHEMA_VERSION,
    Result,
    atomic_write_text,
    ensure_writable_dir,
    environment,
    read_result,
    write_result,
)


def _result(**overrides) -> Result:
    fields = dict(method="taylor", variant="default", model="timm/vit_tiny", dataset="digits",
                  components="filters", params={}, seed=0, classes=[0, 1], rates=[0.0], curve=[],
                  metrics={}, layers={}, timings={}, environment={}, weights="random")
    return Result(**(fields | overrides))


def test_results_are_written_atomically_and_never_overwritten(tmp_path):
    result = _result()
    first = write_result(result, tmp_path / "out")
    second = write_result(result, tmp_path / "out")
    assert first != second and first.parent == second.parent
    assert "/" not in first.name.replace(str(tmp_path), "") and first.name.startswith("timm-vit_tiny_filters_taylor")
    stored = read_result(first)
    assert stored["schema_version"] == SCHEMA_VERSION and stored["protocol_version"] == 1
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


def test_environment_records_versions_and_checkout():
    env = environment("cpu")
    assert {"python", "torch", "torchvision", "timm", "zennit", "lxt", "captum", "device",
            "git_sha", "git_dirty"} <= set(env)
    assert env["torch"] and env["device"] == "cpu"

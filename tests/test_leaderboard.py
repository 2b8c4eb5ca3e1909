from __future__ import annotations

import json

import pytest

from pxp_bench.errors import ConfigError
from pxp_bench.leaderboard import README_END, README_START, leaderboard_markdown, load_results, update_readme
from pxp_bench.results import SCHEMA_VERSION, Result, write_result


def _result(method: str, seed: int, a_pr: float) -> Result:
    return Result(method=method, variant="default", model="digits-vgg", dataset="digits", components="filters",
                  params={}, seed=seed, classes=[0], rates=[0.0], curve=[], layers={}, timings={},
                  environment={}, weights="packaged", metrics={"a_pr": a_pr, "top_pr": 0.1 * seed})


def test_the_table_averages_seeds_and_ranks_by_a_pr(tmp_path):
    for seed, (good, bad) in enumerate([(0.8, 0.3), (0.6, 0.5)]):
        write_result(_result("lrp", seed, good), tmp_path)
        write_result(_result("random", seed, bad), tmp_path)
    table = leaderboard_markdown(load_results(tmp_path))
    lines = table.splitlines()
    assert lines[2].startswith("| digits-vgg | filters | lrp | default | 0.700 ± 0.100 | 0.05 | 0, 1 |")
    assert "| random |" in lines[3] and "0.400 ± 0.100" in lines[3]


def test_json_files_that_are_not_results_are_skipped_with_a_warning_each(tmp_path):
    write_result(_result("lrp", 0, 0.8), tmp_path)
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "future.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    (tmp_path / "notes.json").write_text("{}")
    with pytest.warns(UserWarning) as caught:
        assert [result["method"] for result in load_results(tmp_path)] == ["lrp"]
    messages = [str(w.message) for w in caught]
    assert [m.split(":")[0] for m in messages] == [
        "skipped binary.json", "skipped broken.json", "skipped future.json", "skipped notes.json"]
    assert all(len(m) > 40 and "\n" not in m for m in messages)  # why it was skipped, on one line
    assert "schema version" in messages[2]


def test_readme_markers_are_filled_and_required(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nafter\n")
    update_readme(readme, "| new |\n")
    assert readme.read_text() == f"intro\n{README_START}\n| new |\n{README_END}\nafter\n"
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="markers"):
        update_readme(readme, "x")


def test_missing_or_empty_results_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_results(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no pxp-bench results"):
        load_results(tmp_path)


def test_a_missing_readme_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        update_readme(tmp_path / "missing.md", "x")

"""An ablation cache (``<--out>/ablation-cache``) that cannot hold files is refused before any scoring, in
one line naming its path and the fix: by `pxp-bench run --agreement` and by a suite whose cells use it."""

from __future__ import annotations

import dataclasses
import os

import pytest
from typer.testing import CliRunner

from helpers import TINY_SUITE
from pxp_bench.agreement import ABLATION_CACHE, check_ablation_cache
from pxp_bench.cli import app
from pxp_bench.errors import ConfigError
from pxp_bench.suites.definition import load_suite
from pxp_bench.suites.runner import run_suite

ARGS = ["run", "--method", "magnitude", "--classes", "3", "--ref-per-class", "4", "--rates", "0,0.5",
        "--evaluate", "masked", "--latency-repeats", "0", "--agreement"]


def _one_line_refusal(done, path) -> None:
    assert done.exit_code == 2, done.output
    assert "Traceback" not in done.output and "Error:" in done.output
    assert str(path) in done.output.replace("\n", "")
    assert len([line for line in done.output.splitlines() if line.strip()]) <= 3  # one line, wrapped at most


def test_a_file_in_place_of_the_ablation_cache_is_refused_before_scoring(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ABLATION_CACHE).write_text("not a folder")
    done = CliRunner().invoke(app, [*ARGS, "--out", str(out)])
    _one_line_refusal(done, out / ABLATION_CACHE)
    assert "is not a folder" in done.output and "choose another --out" in done.output
    assert sorted(p.name for p in out.iterdir()) == [ABLATION_CACHE]  # no result, nothing partial
    assert (out / ABLATION_CACHE).read_text() == "not a folder"
    # without --agreement the cache is not used, so the same --out is fine
    fine = CliRunner().invoke(app, [*ARGS[:-1], "--out", str(out)])
    assert fine.exit_code == 0, fine.output


def test_a_dangling_link_in_place_of_the_ablation_cache_is_refused(tmp_path):
    (tmp_path / ABLATION_CACHE).symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="is not a folder"):
        check_ablation_cache(tmp_path / ABLATION_CACHE)


def test_a_missing_cache_is_accepted_and_not_created_by_the_check(tmp_path):
    check_ablation_cache(tmp_path / ABLATION_CACHE)
    assert not (tmp_path / ABLATION_CACHE).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_ablation_cache_is_refused_before_scoring(tmp_path):
    out = tmp_path / "out"
    (out / ABLATION_CACHE).mkdir(parents=True)
    (out / ABLATION_CACHE).chmod(0o555)
    try:
        assert not os.access(out / ABLATION_CACHE, os.W_OK)
        done = CliRunner().invoke(app, [*ARGS, "--out", str(out)])
        _one_line_refusal(done, out / ABLATION_CACHE)
        assert "ablation-cache folder" in done.output
        assert not list(out.glob("*.json"))
    finally:
        (out / ABLATION_CACHE).chmod(0o755)


@pytest.mark.suite
def test_a_suite_whose_cells_use_the_cache_refuses_it_before_any_cell_runs(plugins, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SUITE)
    out = tmp_path / "out"
    out.mkdir()
    (out / ABLATION_CACHE).write_text("")
    suite = load_suite(str(path), plugins, overrides={"agreement": True})
    with pytest.raises(ConfigError, match=f"{out / ABLATION_CACHE} is not a folder"):
        run_suite(suite, out, plugins)
    assert sorted(p.name for p in out.iterdir()) == [ABLATION_CACHE]  # no cell ran, no record
    # an ablation cell uses it too (it shares the agreement's scores)
    ablation = TINY_SUITE.replace('method = "random"', 'method = "ablation"')
    path.write_text(ablation)
    suite = load_suite(str(path), plugins)
    with pytest.raises(ConfigError, match="is not a folder"):
        run_suite(suite, out, plugins)
    # a suite that needs no ablation runs with it there
    path.write_text(TINY_SUITE)
    plain = load_suite(str(path), plugins)
    done = run_suite(dataclasses.replace(plain, cells=plain.cells[:1]), out, plugins)
    assert done.done == 1 and not done.failed

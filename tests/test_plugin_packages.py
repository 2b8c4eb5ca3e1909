"""Plugins from the outside, as users install them: the example package in this venv, broken packages
installed by pip, and a package installed and uninstalled again. Each command runs in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from helpers import pip_install_plugin

RATES = ["--rates", "0,0.5"]
BROKEN = {  # distribution: its module's source
    "pxp-bad-import": "raise ImportError('missing dependency foo')\n",
    "pxp-bad-duplicate": textwrap.dedent('''
        import pxp_bench

        @pxp_bench.hookimpl
        def register_methods(register):
            register(pxp_bench.MethodSpec(name="dup-ok", score=lambda *a: None, summary="before the clash"))
            register(pxp_bench.MethodSpec(name="taylor", score=lambda *a: None, summary="a clash"))
    '''),
    "pxp-bad-hookname": textwrap.dedent('''
        import pxp_bench

        @pxp_bench.hookimpl
        def register_method(register):
            pass
    '''),
    "pxp-bad-signature": textwrap.dedent('''
        import pxp_bench

        @pxp_bench.hookimpl
        def register_methods(reg):
            pass
    '''),
    "pxp-bad-scoring": textwrap.dedent('''
        import pxp_bench

        def explode(model, components, reference, context):
            raise ValueError("division by zero in my method")

        @pxp_bench.hookimpl
        def register_methods(register):
            register(pxp_bench.MethodSpec(name="explodes", score=explode, summary="raises while scoring"))
    '''),
}


def pxp_bench(*args: str, python: str = sys.executable, load: str | None = None,
              path: Path | None = None) -> subprocess.CompletedProcess:
    """``pxp-bench ARGS`` in a fresh process; ``load`` sets PXP_BENCH_LOAD_PLUGINS (None: every plugin)."""
    env = {key: value for key, value in os.environ.items() if key not in ("PXP_BENCH_LOAD_PLUGINS", "PYTHONPATH")}
    if load is not None:
        env["PXP_BENCH_LOAD_PLUGINS"] = load
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([python, "-m", "pxp_bench.cli", *args], capture_output=True, text=True, env=env,
                          cwd=path or None, timeout=600)


def plugin_table(*args, **kwargs) -> dict[str, dict]:
    listed = pxp_bench("plugins", "--json", *args, **kwargs)
    assert listed.returncode == 0, listed.stderr
    return {info["name"]: info for info in json.loads(listed.stdout)}


@pytest.mark.e2e
def test_the_installed_example_is_found_through_its_entry_point_and_left_out_when_not_named():
    infos = plugin_table()
    assert infos["example"]["distribution"] == "pxp-bench-example" and infos["example"]["status"] == "loaded"
    assert infos["example"]["registers"]["methods"] == ["wanda"]
    assert "example" not in plugin_table(load="")
    assert "example" in plugin_table(load="PXP_Bench_Example")


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("broken") / "site"
    for dist, source in BROKEN.items():
        pip_install_plugin(site, dist, source)
    return site


@pytest.mark.e2e
def test_broken_plugins_are_each_named_and_the_rest_keeps_working(broken_site, tmp_path):
    infos = plugin_table(path=broken_site)
    status = {name: infos[name]["status"] for name in BROKEN}
    assert status["pxp-bad-import"] == "failed: ImportError: missing dependency foo"
    assert status["pxp-bad-duplicate"].startswith("failed: method 'taylor' is registered twice")
    assert status["pxp-bad-hookname"].startswith("failed: unknown hook 'register_method'")
    assert "{'reg'}" in status["pxp-bad-signature"] and status["pxp-bad-scoring"] == "loaded"
    assert infos["example"]["status"] == "loaded"

    works = pxp_bench("run", "--method", "wanda", "--model", "faces-cnn", *RATES, "--out", str(tmp_path), path=broken_site)
    assert works.returncode == 0, works.stderr
    warned = [line for line in works.stderr.splitlines() if "failed and is not loaded" in line]
    assert len(warned) == 4 and "Warning: plugin 'pxp-bad-import' from pxp-bad-import 1.2.3 failed and is not " \
        "loaded: ImportError: missing dependency foo. Fix or uninstall pxp-bad-import" in works.stderr

    explodes = pxp_bench("run", "--method", "explodes", *RATES, "--out", str(tmp_path), path=broken_site)
    errors = [line for line in explodes.stderr.splitlines() if line.startswith("Error")]
    assert explodes.returncode == 2 and "Traceback" not in explodes.stderr
    assert errors == ["Error: method 'explodes' from plugin 'pxp-bad-scoring' (pxp-bad-scoring 1.2.3) failed while "
                      "scoring: ValueError: division by zero in my method."]

    withdrawn = pxp_bench("run", "--method", "dup-ok", *RATES, "--out", str(tmp_path), path=broken_site)
    assert withdrawn.returncode == 2
    assert "unknown method 'dup-ok'" in withdrawn.stderr and "plugin 'pxp-bad-duplicate' from pxp-bad-duplicate " \
        "1.2.3 failed" in withdrawn.stderr


@pytest.mark.e2e
def test_an_uninstalled_plugin_is_gone(tmp_path):
    """A scratch venv layered over this one (so pxp-bench is there), pip install, then pip uninstall."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "zz-pxp-bench-test.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    pip_install_plugin(tmp_path / "sources" / "x", "pxp-tiny", textwrap.dedent('''
        import pxp_bench

        @pxp_bench.hookimpl
        def register_methods(register):
            register(pxp_bench.MethodSpec(name="tiny", score="pxp_bench.attribution.baselines:random_scores",
                                          summary="random, under another name"))
    '''), python=python)
    assert plugin_table(python=python)["pxp-tiny"]["registers"] == {"methods": ["tiny"]}
    subprocess.run([sys.executable, "-m", "pip", "--python", python, "uninstall", "--yes", "--quiet", "pxp-tiny"],
                   check=True, capture_output=True)
    assert "pxp-tiny" not in plugin_table(python=python)

"""Shared fixtures: built-in plugins only, the digits splits, fresh copies of the zoo models."""

from __future__ import annotations

import os

os.environ["PXP_BENCH_LOAD_PLUGINS"] = ""  # tests never autoload external plugins

import pytest
import torch

from pxp_bench.data.digits import load_digits_splits
from pxp_bench.models.zoo import build_zoo_model
from helpers import pip_install_plugin, write_image_folder
from pxp_bench.plugins import Plugins, get_plugins

# 2 threads a process; under pytest-xdist (`make test-quick`: -n 2) the cores shared among its workers
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(scope="session")
def plugins() -> Plugins:
    return Plugins(load_external=False)


@pytest.fixture(scope="session")
def digits():
    return load_digits_splits()


@pytest.fixture
def zoo_model():
    """A fresh copy of a packaged zoo model (tests may mutate or compare it)."""

    def build(name: str = "digits-vgg") -> torch.nn.Module:
        return build_zoo_model(name).module

    return build


@pytest.fixture
def fresh_plugin_cache():
    """Reset the process-wide plugin cache before and after a test that changes what loads."""
    get_plugins.cache_clear()
    yield
    get_plugins.cache_clear()


@pytest.fixture
def install_plugin(tmp_path, monkeypatch, fresh_plugin_cache):
    """Install a real third-party plugin package (built here, installed by pip into a folder on
    ``sys.path``): ``install_plugin(dist, source)``, then select it through ``PXP_BENCH_LOAD_PLUGINS``."""
    import importlib
    import sys

    site = tmp_path / "site"
    selected: list[str] = []
    modules: list[str] = []

    def install(dist: str, source: str, *, entry_point: str | None = None) -> str:
        modules.append(pip_install_plugin(site, dist, source, entry_point))
        selected.append(dist)
        monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", ",".join(selected))
        importlib.invalidate_caches()
        return modules[-1]

    monkeypatch.syspath_prepend(str(site))
    yield install
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="session")
def imagenet_like(tmp_path_factory):
    """Three WordNet-id classes, 6 train and 3 val JPEGs each."""
    return write_image_folder(tmp_path_factory.mktemp("imagenet"), ["n01440764", "n01443537", "n01484850"])


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL database of the multi-worker and cluster tests: `.ci/run` starts it (`.ci/postgres.sh`) and
    sets PXP_BENCH_REQUIRE_POSTGRES, so there they run; elsewhere they skip unless PXP_BENCH_TEST_POSTGRES is set."""
    url = os.environ.get("PXP_BENCH_TEST_POSTGRES")
    if not url:
        if os.environ.get("PXP_BENCH_REQUIRE_POSTGRES"):
            pytest.fail("PXP_BENCH_REQUIRE_POSTGRES is set but PXP_BENCH_TEST_POSTGRES is not: start the server "
                        "with `source .ci/postgres.sh`.")
        pytest.skip("set PXP_BENCH_TEST_POSTGRES=postgresql://USER:PASSWORD@127.0.0.1/DB (see .ci/postgres.sh)")
    return url

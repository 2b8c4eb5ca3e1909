"""The package's import graph (tools/import_graph.py, on grimp): no circles, and the levels table in
docs/architecture.md is the one the code gives."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "import_graph.py"


@pytest.fixture(scope="module")
def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_has_no_import_circles(import_graph):
    found = import_graph.circles(import_graph.build())
    assert not found, "import circles (move the shared names down a level):\n" + "\n".join(
        " -> ".join(loop) for loop in found)


def test_a_circle_is_found_even_through_a_lazy_or_type_checking_import(import_graph, tmp_path, monkeypatch):
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
                                    "    from circled.high import Thing\n")
    (package / "middle.py").write_text("import circled.low\n")
    (package / "high.py").write_text("def f():\n    from circled import middle\n\nclass Thing: ...\n")
    (package / "apart.py").write_text("import circled.high\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = import_graph.circles(import_graph.build("circled"))
    assert found == [("circled.high", "circled.middle", "circled.low", "circled.high")]


def test_levels_put_every_module_above_what_it_imports(import_graph):
    graph = import_graph.build()
    level = import_graph.levels(graph)
    assert set(level) == set(graph.modules)
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            assert level[imported] < level[module], (module, imported)
    entry = "pxp_bench.cli.__main__"  # `python -m pxp_bench.cli`: runs the command line, so stands above it
    assert level[entry] == level["pxp_bench.cli"] + 1
    # the command line is the top: nothing imports it
    assert max(value for module, value in level.items() if module != entry) == level["pxp_bench.cli"]


def test_the_documented_levels_are_the_code_s(import_graph):
    table = import_graph.levels_table(import_graph.build())
    assert import_graph.documented(import_graph.DOC.read_text(encoding="utf-8")) == table, (
        "docs/architecture.md's import levels are stale: run `make architecture`.")


def test_each_package_says_what_lives_there():
    """Every subpackage's docstring names each of its modules, so a reader knows where a concept lives."""
    root = Path(__file__).resolve().parent.parent / "pxp_bench"
    missing = {}
    for init in sorted(root.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        modules = sorted(p.stem for p in init.parent.glob("*.py") if p.stem not in ("__init__", "__main__"))
        if absent := [m for m in modules if not re.search(rf"`+{re.escape(m)}(\.py)?`+", doc)]:
            missing[init.parent.name] = absent
    assert not missing, f"package docstrings that do not name these modules: {missing}"

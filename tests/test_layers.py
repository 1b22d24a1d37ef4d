"""The packages-by-role import rules (docs/design.md, "Layout"), read from the source with `ast`.

engine imports nothing from pipeline, serving or cli; engine.core imports only NumPy, the standard
library, itself and the run settings (standard library only); serving imports only engine.core and the run settings (standard library only) from
the engine; pipeline imports no serving or cli module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pipeline_code"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def modules(package: str) -> list[Path]:
    return sorted((PKG / package).rglob("*.py"))


def project(names: set[str]) -> set[str]:
    return {n for n in names if n == "pipeline_code" or n.startswith("pipeline_code.")}


@pytest.mark.parametrize("path", modules("engine"), ids=lambda p: str(p.relative_to(PKG)))
def test_engine_imports_no_outer_layer(path):
    outer = {n for n in project(imports(path)) if not n.startswith("pipeline_code.engine") and n != "pipeline_code"}
    assert outer == set()


@pytest.mark.parametrize("path", modules("engine/core"), ids=lambda p: str(p.relative_to(PKG)))
def test_core_imports_numpy_and_stdlib_only(path):
    other = {n for n in imports(path)
             if n.split(".")[0] not in STDLIB and n.split(".")[0] != "numpy"
             and not n.startswith(("pipeline_code.engine.core", "pipeline_code.engine.settings"))}
    assert other == set()


@pytest.mark.parametrize("path", modules("serving"), ids=lambda p: str(p.relative_to(PKG)))
def test_serving_imports_only_the_core(path):
    allowed = ("pipeline_code.engine.core", "pipeline_code.engine.settings", "pipeline_code.serving")
    if path.name == "cli.py":  # the `serve`/`forecast` subcommands' adapter, not the app: it may use the client
        allowed += ("pipeline_code.cli.client",)
    assert {n for n in project(imports(path)) if not n.startswith(allowed)} == set()


@pytest.mark.parametrize("path", modules("pipeline"), ids=lambda p: str(p.relative_to(PKG)))
def test_pipeline_imports_no_serving_or_cli(path):
    assert {n for n in project(imports(path)) if n.startswith(("pipeline_code.serving", "pipeline_code.cli"))} == set()

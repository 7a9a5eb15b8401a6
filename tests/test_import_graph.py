"""The shape of the core, read from the code: an import graph that points one way, a torch-free settings
module, and built-in plugins that use only the public API (so a third party can write anything they do)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "harness"
#: the CLI imports each command's modules when the command runs, so `bench --help` starts fast;
#: nothing imports the CLI, so these imports can close no circle
LAZY_BY_DESIGN = {"cli"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported harness module, inside a function) for every import in `path`, type-checking ones included."""
    found: list[tuple[str, bool]] = []
    modules = {p.stem for p in CORE.glob("*.py")}

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            targets: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.module:
                if child.module == "harness":
                    targets = [alias.name for alias in child.names if alias.name in modules]
                elif child.module.startswith("harness."):
                    targets = [child.module.split(".")[1]]
            elif isinstance(child, ast.Import):
                targets = [a.name.split(".")[1] for a in child.names if a.name.startswith("harness.")]
            found.extend((target, local) for target in targets)
            visit(child, local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(ast.parse(path.read_text()), False)
    return found


def _graph() -> dict[str, set[str]]:
    return {p.stem: {target for target, _ in _imports(p)} for p in CORE.glob("*.py") if p.stem != "__init__"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, or None (depth-first search, the path kept)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := walk(target)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_core_has_no_import_circle_type_hints_included() -> None:
    graph = _graph()
    assert len(graph) > 40  # the graph was read
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_inside_a_function_outside_the_cli() -> None:
    local = {
        f"{path.stem} imports harness.{target} inside a function"
        for path in CORE.glob("*.py")
        if path.stem not in LAZY_BY_DESIGN | {"__init__"}
        for target, inside in _imports(path)
        if inside
    }
    assert not local


def _imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


def test_the_settings_and_the_package_import_without_torch() -> None:
    settings = _imported_modules("import harness.settings")
    assert "harness.settings" in settings and "pydantic" in settings  # importtime was read
    assert not {m for m in settings if m == "torch" or m.startswith("torch.")}
    package = _imported_modules("import harness")
    assert "torch" not in package
    assert "torch" in _imported_modules("import harness.components")  # the check can see torch


def test_every_public_name_loads_and_is_declared_for_type_checkers() -> None:
    for name in harness.__all__:
        assert getattr(harness, name) is not None, name
    tree = ast.parse((CORE / "__init__.py").read_text())
    checked = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        if isinstance(child, ast.ImportFrom)
        for alias in child.names
    }
    assert checked == set(harness.EXPORTS)


def test_built_in_plugins_import_only_the_public_api() -> None:
    private = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness."):
                private.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import ...")
            if isinstance(node, ast.Import) and any(a.name.startswith("harness.") for a in node.names):
                private.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {node.names[0].name}")
    assert not private


def test_every_public_name_is_in_the_plugin_docs() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    assert not [name for name in harness.__all__ if f"`{name}`" not in text]

"""Smaller units with one job each: limits on the core's functions, read from the code."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from radon.complexity import cc_visit

from harness.training import TrainingLoop

CORE = Path(__file__).resolve().parents[1] / "harness"
MAX_COMPLEXITY = 20
MAX_LINES = 80


def test_no_function_of_the_core_is_too_complex() -> None:
    found = [
        f"{path.name}:{block.lineno} {block.name}: {block.complexity}"
        for path in sorted(CORE.glob("*.py"))
        for block in cc_visit(path.read_text())
        if block.complexity > MAX_COMPLEXITY
    ]
    assert len(list(CORE.glob("*.py"))) > 40
    assert not found


def test_no_function_of_the_core_is_too_long() -> None:
    found = [
        f"{path.name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for path in sorted(CORE.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES  # type: ignore[operator]
    ]
    assert not found


def test_the_training_loop_is_built_from_an_assembled_cell() -> None:
    parameters = list(inspect.signature(TrainingLoop.__init__).parameters)
    assert parameters == ["self", "cell", "observer"]

"""The docs say what the code does: every hook with its exact signature, the quickstart as CI runs it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from harness import hookspecs

ROOT = Path(__file__).parents[1]
HOOKS = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("bench_")]


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_signature(name: str) -> None:
    signature = f"def {name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")
    assert signature in (ROOT / "docs" / "plugins.md").read_text()


def test_readme_quickstart_is_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", readme, re.S)
    assert block
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].endswith("bench run suites/quickstart.toml")
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_builtin_strategy_is_in_the_catalogue_docs() -> None:
    from harness.registry import BUILTIN, Registry

    text = (ROOT / "docs" / "strategies.md").read_text()
    builtin = [e.name for e in Registry(entry_points=False).all() if e.kind == "strategy" and e.provider == BUILTIN]
    assert len(builtin) >= 10
    assert [name for name in builtin if f"| `{name}` |" not in text] == []

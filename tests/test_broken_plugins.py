"""A plugin author's mistake leaves that plugin out with one warning naming it and its file:
`bench plugins` shows it and why, `bench plan` of a suite that does not use it works."""

from __future__ import annotations

import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness import Strategy, StrategyOptions, hookimpl
from harness.cli import create_app
from harness.registry import Registry, reset_default_registry
from tests.conftest import tiny_suite, to_toml

HEADER = """
from pydantic import BaseModel

from harness import Strategy, StrategyOptions, hookimpl


class Mine(Strategy):
    \"\"\"A plugin author's strategy.\"\"\"

    name = "mine"

    def prepare(self, model):
        return []
"""
BROKEN = {
    "unknown_hook": ("@hookimpl\ndef bench_strategie():\n    return [Mine]\n", "bench_strategie"),
    "import_error": ("import bench_no_such_dependency\n", "bench_no_such_dependency"),
    "bad_defaults": (
        "class MineOptions(StrategyOptions):\n    rank: int = 'four'\n\n\n"
        "Mine.Options = MineOptions\n\n\n@hookimpl\ndef bench_strategies():\n    return [Mine]\n",
        "rank = 'four'",
    ),
    "missing_base": (
        "class MineOptions(BaseModel):\n    rank: int = 4\n\n\n"
        "Mine.Options = MineOptions\n\n\n@hookimpl\ndef bench_strategies():\n    return [Mine]\n",
        "must subclass harness.components.StrategyOptions",
    ),
}
runner = CliRunner()


@pytest.fixture
def broken_plugin(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module `bench_broken_<case>` on the path, loaded through BENCH_PLUGINS."""
    case = request.param
    module = f"bench_broken_{case}"
    path = tmp_path / "plugins" / f"{module}.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(HEADER) + "\n\n" + BROKEN[case][0])
    monkeypatch.syspath_prepend(str(path.parent))
    monkeypatch.setenv("BENCH_PLUGINS", module)
    monkeypatch.delitem(sys.modules, module, raising=False)
    reset_default_registry()
    yield module, path, BROKEN[case][1]
    reset_default_registry()


@pytest.mark.parametrize("broken_plugin", list(BROKEN), indirect=True)
def test_a_broken_plugin_is_one_warning_and_plugins_and_plan_still_work(broken_plugin, tmp_path: Path) -> None:
    module, path, why = broken_plugin
    app = create_app()
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        listed = runner.invoke(app, ["plugins"])
    assert listed.exit_code == 0, listed.output
    assert len(said) == 1, [str(w.message) for w in said]
    message = str(said[0].message)
    assert module in message and str(path) in message and why in message
    assert "strategy  linear_probe\n" in listed.stdout and "strategy  mine\n" not in listed.stdout
    assert f"broken: {module} ({path}):" in listed.stdout and why in listed.stdout

    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(tiny_suite(tmp_path / "out")))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        planned = runner.invoke(app, ["plan", str(suite)])  # the registry is loaded once per process
    assert planned.exit_code == 0, planned.output
    assert "to run" in planned.output
    assert len(said) == 0


@pytest.mark.parametrize("broken_plugin", ["bad_defaults"], indirect=True)
def test_a_suite_naming_a_broken_plugin_says_why_it_is_unknown(broken_plugin, tmp_path: Path) -> None:
    _, _, why = broken_plugin
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(tiny_suite(tmp_path / "out", strategies=[{"name": "mine"}])))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        planned = runner.invoke(create_app(), ["plan", str(suite)])
    assert planned.exit_code == 2
    assert "strategies[0].name: unknown strategy 'mine'" in planned.stderr and why in planned.stderr


def test_a_hook_that_raises_leaves_its_plugin_out_and_not_its_components_half_in() -> None:
    class Half:
        @hookimpl
        def bench_datasets(self):
            return []

        @hookimpl
        def bench_strategies(self):
            raise RuntimeError("boom")

    with pytest.warns(UserWarning, match=r"plugin half .*bench_strategies raised RuntimeError: boom"):
        registry = Registry(plugins=[(Half(), "half")], entry_points=False)
    assert [b.provider for b in registry.broken] == ["half"]
    assert "full" in registry.names("strategy")


def test_a_bad_option_is_reported_under_the_plugins_own_key(tmp_path: Path) -> None:
    """A plugin's teacher options may have names of its own: errors use them, not distill's."""
    from harness.components import TeacherRef
    from harness.errors import SuiteError
    from harness.suite import parse_suite

    class MentorOptions(StrategyOptions):
        mentor_backbone: str
        mentor_strategy: str = "full"

    class Mentor(Strategy):
        """Learns from another cell."""

        name = "mentor"
        Options = MentorOptions

        def teacher(self) -> TeacherRef:
            return TeacherRef(self.options.mentor_backbone, self.options.mentor_strategy)

        def prepare(self, model):
            return []

    class Plugin:
        @hookimpl
        def bench_strategies(self):
            return [Mentor]

    registry = Registry(plugins=[(Plugin(), "mentor-plugin")], entry_points=False)
    mentor = {"name": "mentor", "options": {"mentor_backbone": "resnet1000"}}
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}, mentor])
    with pytest.raises(
        SuiteError, match=r"strategies\[1\]\.options\.mentor_backbone: unknown backbone 'resnet1000'"
    ):
        parse_suite(data, registry=registry)
    mentor["options"] = {"mentor_backbone": "resnet18", "mentor_strategy": "fulll"}
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}, mentor])
    with pytest.raises(SuiteError, match=r"strategies\[1\]\.options\.mentor_strategy: unknown strategy 'fulll'"):
        parse_suite(data, registry=registry)

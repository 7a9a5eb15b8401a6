"""Optional extras: without peft the lora cells are skipped with the line to install it, the others
still run; without matplotlib `bench plot` is one line and exit 2; neither is imported before use.

`sys.modules[name] = None` makes `import name` raise ImportError (and `find_spec` find nothing),
so the missing-extra paths are tested without uninstalling anything.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness import extras
from harness.cli import create_app
from harness.errors import Unsupported
from harness.extras import DISTRIBUTION, install_hint
from harness.store import load_results
from tests.conftest import tiny_suite, to_toml

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
NO_PEFT = f"lora needs peft, which is not installed: {install_hint('lora')}"
NO_MATPLOTLIB = f"bench plot needs matplotlib: {install_hint('plot')}"
runner = CliRunner()
app = create_app()


def _lora_suite(tmp_path: Path) -> Path:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}, {"name": "lora", "options": {"rank": 2}}])
    data["tasks"] = data["tasks"][:1]
    data["training"]["max_steps"] = 1
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    return suite


def test_lora_without_peft_is_skipped_and_the_other_strategies_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    suite = _lora_suite(tmp_path)
    plan = runner.invoke(app, ["plan", str(suite)])
    assert plan.exit_code == 0, plan.output
    assert "1 to run, 1 skipped" in plan.output
    assert f"skipped: {NO_PEFT} (cells 2)" in plan.output
    done = runner.invoke(app, ["run", str(suite), "--quiet"])
    assert done.exit_code == 0, done.output
    frame = load_results(tmp_path / "out").set_index("strategy")
    assert frame.loc["full", "status"] == "ok"
    assert (frame.loc["lora", "status"], frame.loc["lora", "reason"]) == ("skipped", NO_PEFT)
    report = runner.invoke(app, ["report", str(tmp_path / "out"), "-f", "csv"])
    cells = pd.read_csv(io.StringIO(report.stdout)).astype(str).to_numpy().ravel().tolist()
    assert f"1 skipped: {NO_PEFT}" in cells


def test_lora_prepare_without_peft_says_which_extra(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker without the extra (planned on a machine with it) skips the cell with the same line."""
    monkeypatch.setitem(sys.modules, "peft", None)
    lora = registry.create("strategy", "lora", {})
    assert lora.check("classification") == NO_PEFT
    with pytest.raises(Unsupported, match=re.escape(install_hint("lora")) + "$"):
        lora.prepare(None)  # fails on the import, before it reads the model


def test_lora_with_peft_checks_out(registry) -> None:
    pytest.importorskip("peft")
    assert registry.create("strategy", "lora", {}).check("segmentation") is None


def test_plot_without_matplotlib_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)
    done = runner.invoke(app, ["plot", str(GOLDEN), "-o", str(tmp_path / "plots")])
    assert done.exit_code == 2
    assert done.stderr == f"error: {NO_MATPLOTLIB}\n"
    assert not (tmp_path / "plots").exists()  # said before any work


def test_cli_and_plugins_import_no_optional_extra(tmp_path: Path) -> None:
    """`bench plugins` and `bench plan` of a lora suite import neither peft nor the plotting module."""
    script = textwrap.dedent(
        f"""
        import sys
        from typer.testing import CliRunner
        from harness.cli import create_app

        app = create_app()
        for args in (["plugins"], ["plan", {str(_lora_suite(tmp_path))!r}]):
            done = CliRunner().invoke(app, args)
            assert done.exit_code == 0, done.output
        print(sorted(name for name in ("peft", "harness.plots") if name in sys.modules))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


class _Dist:
    """Just enough of an importlib.metadata.Distribution for `extras`."""

    def __init__(self, direct_url: dict | None) -> None:
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if name == "direct_url.json" and self.direct_url else None


def _installed_as(monkeypatch: pytest.MonkeyPatch, dist: _Dist | None, source_tree: bool) -> None:
    extras._checkout.cache_clear()
    monkeypatch.setattr(extras, "_own_distribution", lambda: dist)
    if not source_tree:  # as from site-packages: no pyproject.toml beside the package
        monkeypatch.setattr(extras, "__file__", "/nowhere/site-packages/harness/extras.py")
    monkeypatch.chdir("/")


def test_an_editable_install_is_told_to_install_the_extra_from_its_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "my checkout"
    checkout.mkdir()
    _installed_as(monkeypatch, _Dist({"url": checkout.as_uri(), "dir_info": {"editable": True}}), source_tree=False)
    try:
        assert install_hint("plot") == f'pip install -e "{checkout.resolve()}[plot]"'
        monkeypatch.chdir(checkout)
        assert install_hint("lora") == 'pip install -e ".[lora]"'  # as the README writes it
    finally:
        extras._checkout.cache_clear()


def test_an_install_from_the_index_is_told_the_distribution_name(monkeypatch: pytest.MonkeyPatch) -> None:
    for dist in (_Dist(None), _Dist({"url": "https://example.org/x.whl", "archive_info": {}}), None):
        _installed_as(monkeypatch, dist, source_tree=False)
        try:
            assert install_hint("ray") == f'pip install "{DISTRIBUTION}[ray]"'
        finally:
            extras._checkout.cache_clear()
    assert DISTRIBUTION != "bench"  # bench on the package index is another project


def test_a_source_tree_on_the_path_is_told_to_install_from_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _installed_as(monkeypatch, _Dist(None), source_tree=True)
    try:
        root = Path(extras.__file__).resolve().parents[1]
        assert install_hint("plot") == f'pip install -e "{root}[plot]"'
    finally:
        extras._checkout.cache_clear()


def test_the_distribution_is_named_finetune_bench_and_keeps_the_bench_command() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["name"] == DISTRIBUTION
    assert project["scripts"]["bench"] == "harness.cli:main"
    for example in (Path(__file__).parents[1] / "examples").glob("*/pyproject.toml"):
        needs = tomllib.loads(example.read_text())["project"].get("dependencies", [])
        assert DISTRIBUTION in needs and "bench" not in needs, example


def test_without_timm_no_command_warns_and_a_timm_cell_is_skipped_with_the_install_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The light install has no timm: the built-in timm backbone stays listed without a warning on
    every command, and a suite that uses it gets its cells skipped with the line that installs it."""
    import warnings

    from harness.registry import Registry

    monkeypatch.setitem(sys.modules, "timm", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry = Registry()
    assert "timm" in registry.names("backbone") and not registry.broken
    plugins = runner.invoke(app, ["plugins"])
    assert plugins.exit_code == 0 and "warning" not in plugins.output
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}], backbones=[{"name": "timm"}])
    data["tasks"] = data["tasks"][:1]
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    done = runner.invoke(app, ["run", str(suite), "--quiet"])
    assert done.exit_code == 0, done.output
    frame = load_results(tmp_path / "out")
    missing = f"the timm backbone needs timm, which is not installed: {install_hint('timm')}"
    assert (frame["status"].tolist(), frame["reason"].tolist()) == (["skipped"], [missing])

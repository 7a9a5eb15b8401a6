"""Optional extras: without peft the lora cells are skipped with the line to install it, the others
still run; without matplotlib `bench plot` is one line and exit 2; neither is imported before use.

`sys.modules[name] = None` makes `import name` raise ImportError (and `find_spec` find nothing),
so the missing-extra paths are tested without uninstalling anything.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from harness.errors import Unsupported
from harness.store import load_results
from tests.conftest import tiny_suite, to_toml

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
NO_PEFT = "lora needs peft, which is not installed: pip install 'bench[lora]'"
NO_MATPLOTLIB = "bench plot needs matplotlib: pip install 'bench[plot]'"
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
    assert f"1 skipped: {NO_PEFT}" in report.output


def test_lora_prepare_without_peft_says_which_extra(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker without the extra (planned on a machine with it) skips the cell with the same line."""
    monkeypatch.setitem(sys.modules, "peft", None)
    lora = registry.create("strategy", "lora", {})
    assert lora.check("classification") == NO_PEFT
    with pytest.raises(Unsupported, match=r"pip install 'bench\[lora\]'$"):
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

"""The third-party path: the example package in examples/ installed with pip, found through its entry point,
used in a suite; a plugin that fails to import only warns, and a suite that needs it fails clearly."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.store import planned_results
from tests.conftest import plugin_entries, tiny_dataset, to_toml

ROOT = Path(__file__).parents[1]
EXAMPLE = ROOT / "examples" / "bench-surgical"


def _pip_install(package: Path, target: Path) -> None:
    """`pip install` into a folder of its own, so the test environment itself is left as it was."""
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *offline, "--target", str(target)]
    subprocess.run([*command, str(package)], check=True, capture_output=True, text=True)


def _bench(args: list[str], site: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, site))}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip_install(EXAMPLE, target)
    return target


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> Path:
    """A plugin package whose module fails to import."""
    source = tmp_path_factory.mktemp("broken-src")
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "bench-broken"\nversion = "0.1"\n'
        '[project.entry-points.bench]\nbroken = "bench_broken"\n'
        '[tool.setuptools]\npy-modules = ["bench_broken"]\n'
    )
    (source / "bench_broken.py").write_text("import no_such_module_anywhere\n")
    target = tmp_path_factory.mktemp("broken-site")
    _pip_install(source, target)
    return target


def _suite(tmp_path: Path) -> Path:
    suite = {
        "name": "surgical",
        "output": str(tmp_path / "results"),
        "device": "cpu",
        "baseline": "full",
        "training": {"epochs": 2, "max_steps": 4, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "threads": 2},
        "tasks": [{"name": "cls", "kind": "classification", "dataset": tiny_dataset()}],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "full"}, {"name": "surgical", "options": {"stage": -1}}],
    }
    path = tmp_path / "suite.toml"
    path.write_text(to_toml(suite))
    return path


def test_installed_plugin_is_listed_with_its_package(installed: Path, tmp_path: Path) -> None:
    result = _bench(["plugins"], [installed], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "provided by: bench-surgical" in plugin_entries(result.stdout)[("strategy", "surgical")]


def test_installed_plugin_runs_in_a_suite_and_reaches_the_report(installed: Path, tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    run = _bench(["run", str(suite), "--quiet"], [installed], tmp_path)
    assert run.returncode == 0, run.stderr
    report = _bench(["report", str(tmp_path / "results"), "--format", "csv"], [installed], tmp_path)
    frame = pd.read_csv(io.StringIO(report.stdout))
    strategies = dict(zip(frame["strategy"], frame["status"], strict=True))
    assert strategies == {"full": "ok", "surgical": "ok"}
    notes = {r.strategy: r.notes for r in planned_results(tmp_path / "results")}
    assert notes["surgical"]["stage"] == 4  # stage -1 of resnet18's 5, recorded from prepare's context


def test_example_package_tests_pass_with_the_project_test_helpers(installed: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")]
    result = subprocess.run(command, cwd=EXAMPLE, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_a_broken_plugin_warns_naming_its_package_and_the_rest_works(
    installed: Path, broken: Path, tmp_path: Path
) -> None:
    result = _bench(["plugins"], [installed, broken], tmp_path)
    assert result.returncode == 0
    assert result.stderr.startswith("warning: plugin 'broken' from package 'bench-broken' (")
    assert "left out: failed to load: ModuleNotFoundError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "No module named 'no_such_module_anywhere'" in result.stderr
    assert "surgical" in result.stdout and "linear_probe" in result.stdout


def test_a_suite_that_needs_a_missing_plugin_fails_clearly(broken: Path, tmp_path: Path) -> None:
    result = _bench(["run", str(_suite(tmp_path)), "--quiet"], [broken], tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "strategies[1].name: unknown strategy 'surgical'; allowed:" in message
    assert "bench-broken" in message
    assert "Traceback" not in result.stderr

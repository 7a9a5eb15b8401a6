"""The example backbone and dataset packages in examples/, installed with pip and found through their
entry points: listed by `bench plugins` with their packages, and trained together on all three task kinds."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from harness.store import planned_results
from harness.testing import TINY_DETECTION
from tests.conftest import plugin_entries, to_toml
from tests.test_example_plugin import _bench, _pip_install

ROOT = Path(__file__).parents[1]
BACKBONE = ROOT / "examples" / "bench-tinycnn-backbone"
DATASET = ROOT / "examples" / "bench-stripes-dataset"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip_install(BACKBONE, target)
    _pip_install(DATASET, target)
    return target


def _suite(tmp_path: Path, width: object = 8) -> Path:
    stripes = {"name": "stripes", "options": {"image_size": 32, "train": 8, "val": 4, "test": 4}}
    suite = {
        "name": "examples",
        "output": str(tmp_path / "results"),
        "device": "cpu",
        "training": {"epochs": 1, "max_steps": 1, "batch_size": 4, "optimizer": "adamw", "lr": 1e-3, "threads": 2},
        "tasks": [
            {"name": "cls", "kind": "classification", "dataset": stripes},
            {"name": "det", "kind": "detection", "dataset": stripes, "options": TINY_DETECTION},
            {"name": "seg", "kind": "segmentation", "dataset": stripes},
        ],
        "backbones": [{"name": "tinycnn", "options": {"width": width}}],
        "strategies": [{"name": "full"}],
    }
    path = tmp_path / "suite.toml"
    path.write_text(to_toml(suite))
    return path


def test_bench_plugins_lists_the_backbone_and_the_dataset_with_their_packages(installed: Path, tmp_path: Path) -> None:
    result = _bench(["plugins"], [installed], tmp_path)
    assert result.returncode == 0, result.stderr
    entries = plugin_entries(result.stdout)
    assert "bench-tinycnn-backbone" in entries[("backbone", "tinycnn")]
    assert "bench-stripes-dataset" in entries[("dataset", "stripes")]


def test_the_backbone_trains_on_the_dataset_for_every_task_kind(installed: Path, tmp_path: Path) -> None:
    run = _bench(["run", str(_suite(tmp_path)), "--quiet"], [installed], tmp_path)
    assert run.returncode == 0, run.stderr
    report = _bench(["report", str(tmp_path / "results"), "--format", "csv"], [installed], tmp_path)
    assert report.returncode == 0, report.stderr
    frame = pd.read_csv(io.StringIO(report.stdout))
    assert sorted(zip(frame["task"], frame["status"], strict=True)) == [("cls", "ok"), ("det", "ok"), ("seg", "ok")]
    results = {r.task: r for r in planned_results(tmp_path / "results")}
    top1 = results["cls"].metrics["top1"]
    assert top1 is not None and 0 <= top1 <= 1
    assert set(results["seg"].metrics) >= {"miou", "pixel_acc"}


def test_a_bad_backbone_option_is_a_one_line_error(installed: Path, tmp_path: Path) -> None:
    result = _bench(["plan", str(_suite(tmp_path, width="8"))], [installed], tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "suite.toml" in message and "width" in message
    assert "Traceback" not in result.stderr

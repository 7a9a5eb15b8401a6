"""The `bench` command end to end: run, plan, report (markdown, CSV, JSON), plugins, and user errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from tests.conftest import tiny_suite, to_toml

runner = CliRunner()
app = create_app()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """The tiny suite (three task kinds x three strategies) run once through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    suite = root / "tiny.toml"
    suite.write_text(to_toml(tiny_suite(root / "results")))
    result = runner.invoke(app, ["run", str(suite), "--quiet"])
    assert result.exit_code == 0, result.output
    return suite, root / "results"


def test_run_stores_every_cell_ok(finished_run) -> None:
    _, results = finished_run
    documents = [json.loads(p.read_text()) for p in (results / "cells").glob("*.json")]
    assert len(documents) == 9
    assert {d["status"] for d in documents} == {"ok"}
    assert {d["settings"]["task"]["kind"] for d in documents} == {"classification", "detection", "segmentation"}
    metrics = {d["task"]: set(d["metrics"]) for d in documents}
    detection = {"map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100"}
    classification = {"top1", "f1_macro", "balanced_accuracy", "auroc_macro", "ece"}  # five classes: no top5
    assert metrics == {"cls": classification, "det": detection, "seg": {"miou", "pixel_acc"}}


def test_rerun_recomputes_nothing(finished_run) -> None:
    suite, results = finished_run
    before = {p.name: p.read_bytes() for p in (results / "cells").glob("*.json")}
    result = runner.invoke(app, ["run", str(suite), "--quiet"])
    assert result.exit_code == 0
    assert "9 already done, this run: nothing to run" in result.output
    assert {p.name: p.read_bytes() for p in (results / "cells").glob("*.json")} == before


def test_report_markdown(finished_run) -> None:
    _, results = finished_run
    result = runner.invoke(app, ["report", str(results), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    text = result.output
    for header in (
        "## cls (classification; metric `top1`, baseline `scratch`)",
        "## det (detection; metric `map`",
        "## seg (segmentation; metric `miou`",
    ):
        assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| resnet18 |")]
    assert len(rows) == 9
    scratch = [r for r in rows if "| scratch |" in r]
    assert all("| +0.0000 |" in r for r in scratch)  # the baseline's gain over itself
    assert "gain/device-h" in text and "gain/M params" in text and "**Definitions.**" in text
    assert "## Summary: which strategy to use" in text
    # a metric only some tasks report applies to those; the others keep theirs
    mixed = runner.invoke(app, ["report", str(results), "--metric", "map_75"]).output
    assert "## det (detection; metric `map_75`" in mixed and "## cls (classification; metric `top1`" in mixed


def test_report_csv_and_json_parse(finished_run) -> None:
    _, results = finished_run
    csv = runner.invoke(app, ["report", str(results), "--format", "csv"])
    frame = pd.read_csv(io.StringIO(csv.output))
    assert len(frame) == 9
    assert {
        "task",
        "backbone",
        "strategy",
        "mean",
        "std",
        "n",
        "gain",
        "train_seconds",
        "peak_memory_mib",
        "trainable_params",
        "trainable_pct",
        "roi_per_device_hour",
    } <= set(frame.columns)
    base = frame[frame["strategy"] == "scratch"].set_index("task")["mean"]
    for row in frame.itertuples():
        assert row.gain == pytest.approx(row.mean - base[row.task])
    document = json.loads(runner.invoke(app, ["report", str(results), "--format", "json"]).output)
    assert [t["task"] for t in document["tasks"]] == ["cls", "det", "seg"]
    assert document["schema"] == "bench.report/2"
    assert sum(len(t["rows"]) for t in document["tasks"]) == 9


def test_report_to_file_and_unknown_format(finished_run, tmp_path: Path) -> None:
    _, results = finished_run
    target = tmp_path / "report.md"
    assert runner.invoke(app, ["report", str(results), "-o", str(target)]).exit_code == 0
    assert target.read_text().startswith("# bench report")
    bad = runner.invoke(app, ["report", str(results), "--format", "docx"])
    assert bad.exit_code == 2
    assert "unknown format 'docx'; allowed: csv, html, json, latex, markdown" in bad.output


def test_plan_lists_cells_and_their_state(finished_run, tmp_path: Path) -> None:
    suite, _ = finished_run
    result = runner.invoke(app, ["plan", str(suite)])
    assert result.exit_code == 0
    assert "9 done" in result.output
    data = tiny_suite(tmp_path / "fresh", backbones=[{"name": "resnet18"}, {"name": "mobilenet_v3_large"}])
    data["tasks"][2]["options"] = {"output_stride": 8}
    fresh = tmp_path / "fresh.toml"
    fresh.write_text(to_toml(data))
    result = runner.invoke(app, ["plan", str(fresh)])
    assert "15 to run, 3 skipped" in result.output
    assert "skipped: mobilenet_v3_large cannot be built with output stride 8" in result.output


def test_plugins_lists_components_with_providers() -> None:
    result = runner.invoke(app, ["plugins"])
    assert result.exit_code == 0
    for name in ("resnet18", "detection", "shapes", "linear_probe", "sequential", "markdown"):
        assert name in result.output
    assert "bench (built-in)" in result.output


def test_a_failing_cell_does_not_stop_the_suite(tmp_path: Path) -> None:
    import torch

    # a readable checkpoint (a missing one is refused before anything runs) that fits no resnet18
    checkpoint = tmp_path / "model.pth"
    torch.save({"stages.9.weight": torch.zeros(1)}, checkpoint)
    data = tiny_suite(tmp_path / "out", backbones=[{"name": "resnet18", "weights": str(checkpoint)}])
    data["tasks"] = data["tasks"][:1]
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    result = runner.invoke(app, ["run", str(suite), "--quiet"])
    assert result.exit_code == 1
    statuses = {
        json.loads(p.read_text())["strategy"]: json.loads(p.read_text())
        for p in (tmp_path / "out" / "cells").glob("*.json")
    }
    assert statuses["scratch"]["status"] == "ok"  # scratch ignores the weights
    for name in ("linear_probe", "full"):
        assert statuses[name]["status"] == "failed"
        assert f"{checkpoint}: checkpoint does not fit backbone 'resnet18'" in statuses[name]["reason"]
    assert "1 ok" in result.output and "2 failed" in result.output
    report = runner.invoke(app, ["report", str(tmp_path / "out")]).output
    assert report.count(f"| 1 failed: BenchError: {checkpoint}: checkpoint does not fit backbone 'resnet18'") == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = 'x'\nseeds = [0,\n", "invalid TOML"),
        (to_toml(tiny_suite(Path("out"), strategies=[{"name": "ful"}])), "strategies[0].name: unknown strategy 'ful'"),
        (to_toml(tiny_suite(Path("out"), training={"epochs": -2})), "training.epochs: Input should be greater than"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path: Path, text: str, expected: str) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    for command in ("run", "plan"):
        done = subprocess.run(
            [sys.executable, "-m", "harness", command, str(suite)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {suite}: ") and expected in lines[0]
        assert done.stdout == ""


def test_bundled_quickstart_is_found_by_name(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # far from the checkout's suites/
    result = runner.invoke(app, ["plan"])
    assert result.exit_code == 0, result.output
    assert "quickstart: 27 cells" in result.output and "27 to run" in result.output
    assert runner.invoke(app, ["plan", "quickstart"]).output == result.output
    missing = runner.invoke(app, ["plan", "nosuch"])
    assert missing.exit_code == 2
    assert "nosuch: no such suite file or bundled suite; bundled: catalogue, quickstart" in missing.output


def test_command_line_overrides_are_validated(finished_run, tmp_path: Path) -> None:
    suite, _ = finished_run
    bad = runner.invoke(app, ["run", str(suite), "--device", "tpu"])
    assert bad.exit_code == 2
    assert "error: command line: device: Value error, allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'" in bad.output
    elsewhere = tmp_path / "elsewhere"
    done = runner.invoke(app, ["run", str(suite), "--output", str(elsewhere), "--device", "cpu", "-q"])
    assert done.exit_code == 0
    assert len(list((elsewhere / "cells").glob("*.json"))) == 9  # the same cells, stored elsewhere


def test_plan_estimates_the_cost_of_the_cells_to_run(tmp_path: Path) -> None:
    from tests.conftest import tiny_suite, to_toml

    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}, {"name": "linear_probe"}])
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data["training"], "epochs": 2}
    data["tasks"].append(
        {"name": "cifar", "kind": "classification", "dataset": {"name": "cifar10", "options": {"root": str(tmp_path)}}}
    )
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    result = runner.invoke(app, ["plan", str(suite), "--calibrate", "--format", "json"])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)["estimate"]
    groups = {g["task"]: g for g in estimate["groups"]}
    # shapes: 2 cells x 2 epochs x 16 training images; 2 x (2 x 8 val + 8 test) evaluation images
    cls = groups["cls"]
    assert cls["backbone"] == "resnet18" and cls["basis"] == "calibrated"
    assert (cls["cells"], cls["train_images"], cls["eval_images"]) == (2, 64, 48)
    assert cls["from"].startswith("calibrated on cpu")
    assert cls["images_per_second"] > 0 and cls["device_hours"] > 0
    # CIFAR-10 files absent: the release's nominal sizes (45,000 training images after the 10% holdout)
    assert (groups["cifar"]["cells"], groups["cifar"]["train_images"]) == (2, 180_000)
    assert groups["cifar"]["from"].startswith("calibrated on cpu")
    assert estimate["total_device_hours"] == pytest.approx(cls["device_hours"] + groups["cifar"]["device_hours"])

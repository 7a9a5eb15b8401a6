"""`bench plan`: estimates from FLOPs without calibration, wall time per number of slots, plain, CSV and JSON output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cell import Cell
from harness.cli import create_app
from harness.estimate import GroupEstimate, cell_jobs, wall_hours
from harness.settings import (
    BackboneSettings,
    CellSpec,
    DatasetSettings,
    StrategySettings,
    TaskSettings,
    Training,
)
from tests.conftest import tiny_suite, to_toml

runner = CliRunner()
app = create_app()


#: the settings of a cell the estimate's helpers can read
SPEC = CellSpec(
    task=TaskSettings(kind="classification", dataset=DatasetSettings(name="shapes"), metric="top1"),
    backbone=BackboneSettings(name="resnet18"),
    strategy=StrategySettings(name="full"),
    training=Training(),
    seed=0,
)


def _suite(tmp_path: Path, **overrides: Any) -> Path:
    """Classification and segmentation at 32 px, resnet18, two strategies."""
    data = tiny_suite(tmp_path / "out", **{"strategies": [{"name": "scratch"}, {"name": "full"}], **overrides})
    data["tasks"] = [t for t in data["tasks"] if t["kind"] != "detection"]
    path = tmp_path / "suite.toml"
    path.write_text(to_toml(data))
    return path


def _plan(*args: str) -> Any:
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code == 0, result.output
    return result


def test_flops_estimate_without_calibration(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    document = json.loads(_plan(str(suite), "--format", "json", "--tflops", "50").output)
    groups = document["estimate"]["groups"]
    assert [g["task"] for g in groups] == ["cls", "seg"]
    for g in groups:
        assert g["basis"] == "flops" and g["flops_per_image"] > 1e6
        assert g["images_per_second"] == pytest.approx(50e12 / g["flops_per_image"])
        assert g["device_hours"] > 0
        assert g["from"].startswith("FLOPs: ") and g["from"].endswith("GFLOPs/img at 50 TFLOPS (stated)")
    assert document["estimate"]["tflops"] == 50 and document["estimate"]["tflops_source"] == "stated"
    # the table says the same; the suite runs on the CPU, so the default throughput is the CPU's
    text = _plan(str(suite)).output
    assert "FLOPs: " in text and "TFLOPS (assumed for" in text and "CPU cores)" in text
    total = next(line for line in text.splitlines() if line.startswith("estimated total: "))
    assert float(total.split()[2]) > 0 and total.split()[3] == "device-hours;"


def test_detection_flops_are_counted_on_the_cpu(tmp_path: Path) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}])
    data["tasks"] = [t for t in data["tasks"] if t["kind"] == "detection"]
    suite = tmp_path / "det.toml"
    suite.write_text(to_toml(data))
    (group,) = json.loads(_plan(str(suite), "--format", "json").output)["estimate"]["groups"]
    assert group["basis"] == "flops" and group["flops_per_image"] > 1e6


def test_a_group_whose_flops_cannot_be_counted_says_why(tmp_path: Path, monkeypatch) -> None:
    from harness import estimate
    from harness.registry import Registry

    monkeypatch.setattr(estimate, "flops_per_sample", lambda step, batch_size: None)
    document = json.loads(_plan(str(_suite(tmp_path)), "--format", "json").output)
    for g in document["estimate"]["groups"]:
        assert g["device_hours"] is None and g["basis"] is None
        assert g["from"] == "FLOPs not counted: torch could not count them; run `bench plan --calibrate`"
    assert document["estimate"]["total_device_hours"] is None and document["estimate"]["groups_not_estimated"] == 2
    text = _plan(str(_suite(tmp_path))).output
    assert "estimated total: unknown" in text and "wall time" not in text
    # a model that cannot be built: the exception, in one line
    settings = SPEC.model_copy(update={"backbone": BackboneSettings(name="resnet18", options={"no_such_option": 1})})
    why = estimate.count_flops(Cell("k", "cls", "resnet18", "full", 0, settings), Registry(entry_points=False), 5)
    assert why == "ValidationError: 1 validation error for NoOptions"


def test_json_has_the_grid_and_the_estimate(tmp_path: Path) -> None:
    document = json.loads(_plan(str(_suite(tmp_path)), "--format", "json").output)
    assert document["suite"] == "tiny" and document["states"] == {"to run": 4}
    assert len(document["cells"]) == 4
    first = document["cells"][0]
    assert {"index", "task", "backbone", "strategy", "setting", "seed", "key", "state", "device_hours"} <= set(first)
    assert first["index"] == 1 and len(first["key"]) == 16 and first["state"] == "to run"
    estimate = document["estimate"]
    assert set(estimate) >= {"groups", "total_device_hours", "wall_hours", "tflops", "tflops_source"}
    assert list(estimate["wall_hours"]) == ["1", "2", "4", "8"]
    total = estimate["total_device_hours"]
    assert total == pytest.approx(sum(g["device_hours"] for g in estimate["groups"]))
    assert total == pytest.approx(sum(c["device_hours"] for c in document["cells"]))
    assert estimate["wall_hours"]["1"] == pytest.approx(total)
    assert estimate["wall_hours"]["8"] < estimate["wall_hours"]["1"]


def test_csv_has_one_row_per_cell(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(_plan(str(_suite(tmp_path)), "--format", "csv").output)))
    assert len(rows) == 4
    assert [r["index"] for r in rows] == ["1", "2", "3", "4"]
    assert {r["task"] for r in rows} == {"cls", "seg"} and {r["state"] for r in rows} == {"to run"}
    assert all(float(r["device_hours"]) > 0 and r["estimate_from"].startswith("FLOPs: ") for r in rows)


def test_invalid_format_exits_2_with_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", str(_suite(tmp_path)), "--format", "xml"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --format: unknown format 'xml'; allowed: table, csv, json"


def test_plain_output_keeps_every_row_on_one_line(tmp_path: Path) -> None:
    """Not on a terminal: aligned columns, no box characters, one line per cell even when rows are wide."""
    strategies = [{"name": "scratch"}, {"name": "full", "training": {"lr": [0.000123456, 0.000234567]}}]
    suite = _suite(tmp_path, strategies=strategies)
    document = json.loads(_plan(str(suite), "--format", "json").output)
    text = runner.invoke(app, ["plan", str(suite)], env={"COLUMNS": "60"}).output
    assert not set("│┃━─┏┗╇") & set(text)
    lines = text.splitlines()
    assert lines[0] == "tiny: 6 cells"
    assert lines[1].split() == ["#", "task", "backbone", "strategy", "setting", "seed", "key", "state"]
    for cell in document["cells"]:
        (line,) = [line for line in lines if cell["key"][:10] in line]
        assert line.split()[:4] == [str(cell["index"]), cell["task"], cell["backbone"], cell["strategy"]]
        assert line.endswith("to run") and len(line) > 60
    estimate_rows = [line for line in lines if line.startswith(("cls ", "seg "))]
    assert len(estimate_rows) == 2 and all("GFLOPs/img" in line for line in estimate_rows)
    wall = next(line for line in lines if line.startswith("wall time: "))
    assert "1 slot " in wall and "8 slots " in wall


def test_wall_hours_of_independent_jobs() -> None:
    jobs = [(f"j{i}", 1.0, []) for i in range(4)]
    assert wall_hours(jobs, 1) == 4.0
    assert wall_hours(jobs, 2) == 2.0
    assert wall_hours(jobs, 8) == 1.0
    assert wall_hours([], 4) == 0.0


def test_wall_hours_respects_dependencies() -> None:
    # a teacher chain a -> b -> c of 1 h each, and three independent cells of 1 h
    jobs = [("a", 1.0, []), ("b", 1.0, ["a"]), ("c", 1.0, ["b"]), ("x", 1.0, []), ("y", 1.0, []), ("z", 1.0, [])]
    total = sum(hours for _, hours, _ in jobs)
    assert wall_hours(jobs, 1) == total
    assert wall_hours(jobs, 3) == 3.0 > total / 3  # the chain cannot be shortened
    assert wall_hours(jobs, 6) == 3.0
    # a dependency on a cell that is already done (not a job) is met
    assert wall_hours([("s", 2.0, ["done-elsewhere"])], 1) == 2.0
    with pytest.raises(ValueError, match="can never be met"):
        wall_hours([("p", 1.0, ["q"]), ("q", 1.0, ["p"])], 2)


def test_cell_jobs_wait_for_teachers_and_pretraining() -> None:
    stage = Cell("pre", "pretrain:src", "resnet18", "full", 0, SPEC)
    teacher = Cell("t", "cls", "resnet18", "full", 0, SPEC, pretrain="src", keep_model=True)
    student = Cell("s", "cls", "resnet18", "distill", 0, SPEC, teacher="t")
    other = Cell("o", "seg", "resnet18", "full", 0, SPEC)
    groups = [
        GroupEstimate("pretrain:src", "resnet18", 1, 1, 1, 1.0, "x", keys=["pre"]),
        GroupEstimate("cls", "resnet18", 2, 1, 1, 1.0, "x", keys=["t", "s"]),
        GroupEstimate("seg", "resnet18", 1, 0, 0, None, "sizes unknown", keys=["o"]),
    ]
    jobs = cell_jobs(groups, [stage, teacher, student, other], {"src": "pre"})
    assert [(key, after) for key, _, after in jobs] == [("pre", []), ("t", ["pre"]), ("s", ["t"])]
    hours = {key: h for key, h, _ in jobs}
    assert hours["t"] == pytest.approx(groups[1].device_hours / 2)  # the group's hours, evenly
    assert wall_hours(jobs, 8) == pytest.approx(sum(hours.values()))  # a chain: no gain from more slots


def test_plan_without_the_suites_gpu_says_so_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runner = CliRunner()
    app = create_app()
    auto = runner.invoke(app, ["plan", "quickstart", "--device", "auto", "--output", str(tmp_path / "a")])
    assert auto.exit_code == 0, auto.output
    first = auto.output.splitlines()[0]
    assert first.startswith("note: ") and "no CUDA device" in first and "--tflops" in first
    cuda = runner.invoke(app, ["plan", "quickstart", "--device", "cuda", "--output", str(tmp_path / "b")])
    assert cuda.output.splitlines()[0].startswith("note: ")
    assert "'cuda', which this machine does not have" in cuda.output
    stated = runner.invoke(
        app, ["plan", "quickstart", "--device", "auto", "--tflops", "50", "--output", str(tmp_path / "c")]
    )
    assert stated.exit_code == 0 and "note: " not in stated.output
    on_cpu = runner.invoke(app, ["plan", "quickstart", "--device", "cpu", "--output", str(tmp_path / "d")])
    assert "note: " not in on_cpu.output


def test_calibrate_says_what_it_is_doing(tmp_path: Path) -> None:
    data = tiny_suite(tmp_path / "out")
    data["tasks"] = data["tasks"][:1]
    data["strategies"] = data["strategies"][:1]
    path = tmp_path / "s.toml"
    path.write_text(to_toml(data))
    done = runner.invoke(create_app(), ["plan", str(path), "--calibrate"])
    assert done.exit_code == 0, done.output
    assert "calibrating 1/1: cls x resnet18 on cpu" in done.output


def test_calibrating_a_task_without_synthetic_samples_leaves_it_unestimated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin task that makes no synthetic samples is not calibrated; the plan still answers, saying why."""
    from bench_plugins.tasks.classification import Classification

    from harness.components import Task

    monkeypatch.setattr(Classification, "synthetic_samples", Task.synthetic_samples)
    data = tiny_suite(tmp_path / "out")
    data["tasks"] = data["tasks"][:1]
    data["strategies"] = data["strategies"][:1]
    path = tmp_path / "s.toml"
    path.write_text(to_toml(data))
    done = runner.invoke(create_app(), ["plan", str(path), "--calibrate", "--format", "json"])
    assert done.exit_code == 0, done.output
    (group,) = json.loads(done.stdout)["estimate"]["groups"]
    assert group["from"] == "not calibrated: task 'classification' makes no synthetic samples (Task.synthetic_samples)"
    assert group["device_hours"] is None

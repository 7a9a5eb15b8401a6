"""Cells: the grid, stable keys, exclusions and skip reasons."""

from __future__ import annotations

from pathlib import Path

from harness.grid import plan_cells
from harness.suite import parse_suite
from tests.conftest import tiny_suite


def _cells(data, registry):
    return plan_cells(parse_suite(data, registry=registry), registry)


def test_grid_is_tasks_x_backbones_x_strategies_x_seeds(tmp_path: Path, registry) -> None:
    cells = _cells(tiny_suite(tmp_path, seeds=[0, 1]), registry)
    assert len(cells) == 3 * 1 * 3 * 2
    assert len({c.key for c in cells}) == len(cells)


def test_key_is_stable_and_changes_with_any_setting(tmp_path: Path, registry) -> None:
    first = [c.key for c in _cells(tiny_suite(tmp_path), registry)]
    again = [c.key for c in _cells(tiny_suite(tmp_path / "elsewhere"), registry)]
    assert first == again  # the output directory is not part of an experiment
    changed = tiny_suite(tmp_path)
    changed["tasks"][0]["training"] = {"lr": 0.5}
    keys = [c.key for c in _cells(changed, registry)]
    assert keys[:3] != first[:3] and keys[3:] == first[3:]


def test_scratch_ignores_weights_and_pretrain(tmp_path: Path, registry) -> None:
    data = tiny_suite(
        tmp_path,
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": {"name": "shapes"}}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
    )
    by_strategy = {c.strategy: c for c in _cells(data, registry) if c.task == "cls"}
    assert by_strategy["scratch"].settings.backbone.weights == "none"
    assert by_strategy["scratch"].pretrain is None
    assert by_strategy["full"].settings.backbone.weights.startswith("pretrain:src@")
    assert by_strategy["full"].pretrain == "src"


def test_exclusions_remove_cells(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path, exclude=[{"task": "det", "strategy": "scratch"}, {"strategy": "full"}])
    cells = _cells(data, registry)
    assert {(c.task, c.strategy) for c in cells} == {
        ("cls", "scratch"),
        ("cls", "linear_probe"),
        ("det", "linear_probe"),
        ("seg", "scratch"),
        ("seg", "linear_probe"),
    }


def test_cells_that_cannot_be_built_are_skipped_with_reason(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path, backbones=[{"name": "resnet18"}, {"name": "mobilenet_v3_large"}])
    data["tasks"][2]["options"] = {"output_stride": 8}
    skipped = [c for c in _cells(data, registry) if c.skip_reason]
    assert {(c.task, c.backbone) for c in skipped} == {("seg", "mobilenet_v3_large")}
    assert "output stride 8" in skipped[0].skip_reason


def test_segmentation_needs_two_samples_per_batch(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path)
    data["tasks"][2]["training"] = {"batch_size": 1}
    reasons = {c.task: c.skip_reason for c in _cells(data, registry)}
    assert reasons["seg"] == "segmentation needs training.batch_size >= 2"
    assert reasons["cls"] is None

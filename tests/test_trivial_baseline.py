"""Trivial baselines: each task's predictor that never looks at an image, and the report's marks against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bench_plugins.reporters.tables import Json, Markdown
from bench_plugins.tasks.classification import Classification
from bench_plugins.tasks.detection import Detection
from bench_plugins.tasks.segmentation import VOID, Segmentation

from harness.driver import run_suite
from harness.registry import Registry
from harness.report import build_report
from harness.result import CellResult, Cost
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite

# ---- the tasks' trivial predictors, on made-up test targets ----


def test_classification_trivial_is_the_majority_class() -> None:
    labels = torch.tensor([2, 2, 2, 0, 1, 2, 3, 3, 4, 5, 6, 2])  # 5 of 12 are class 2, 2 are class 3
    batches = [(torch.rand(6, 3, 4, 4), labels[:6]), (torch.rand(6, 3, 4, 4), labels[6:])]
    trivial = Classification().trivial(iter(batches), num_classes=7)
    assert trivial["top1"] == pytest.approx(5 / 12)
    # top-5: the five most frequent classes (2, 3, then three of the singletons) cover 5 + 2 + 3 labels
    assert trivial["top5"] == pytest.approx(10 / 12)
    assert Classification.trivial_predictor == "majority class"


def test_segmentation_trivial_is_the_most_frequent_class_at_every_pixel() -> None:
    masks = torch.zeros(2, 4, 4, dtype=torch.int64)  # background 0 ...
    masks[0, :2, :2] = 1  # ... 4 pixels of class 1
    masks[1, 0, :] = VOID  # 4 void pixels, ignored
    trivial = Segmentation().trivial(iter([(torch.rand(2, 3, 4, 4), masks)]), num_classes=2)
    assert trivial["pixel_acc"] == pytest.approx(24 / 28)
    assert trivial["miou"] == pytest.approx((24 / 28 + 0.0) / 2)  # class 1 never predicted: IoU 0


def test_detection_trivial_is_no_detections() -> None:
    targets = [{"boxes": torch.tensor([[1.0, 1.0, 8.0, 8.0]]), "labels": torch.tensor([1]),
                "iscrowd": torch.tensor([0])}]  # fmt: skip
    trivial = Detection().trivial(iter([([torch.rand(3, 16, 16)], targets)]), num_classes=1)
    assert trivial["map"] == 0.0 and trivial["map_50"] == 0.0 and trivial["mar_100"] == 0.0


def test_top5_of_five_classes_is_not_reported() -> None:
    assert Classification().reported_metrics(5) == ("top1", "f1_macro", "balanced_accuracy", "auroc_macro", "ece")
    assert Classification().reported_metrics(6) == Classification.metrics


# ---- the report against made-up results ----


def _cell(key: str, strategy: str, seed: int, top1: float, top5: float | None = None, trivial: float | None = 0.40,
          backbone: str = "resnet18", seconds: float = 360.0) -> CellResult:  # fmt: skip
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    cost = Cost(train_seconds=seconds, trainable_params=250, total_params=1000, device_name="cpu")
    metrics: dict[str, float | None] = {"top1": top1}
    if top5 is not None:
        metrics["top5"] = top5
    fields: dict[str, Any] = {"metrics": metrics, "cost": cost}
    if trivial is not None:
        fields |= {"trivial": {"top1": trivial, "top5": 1.0}, "trivial_predictor": "majority class"}
    return CellResult(key, "ok", "cls", backbone, strategy, seed, settings, **fields)


def _store(tmp_path: Path, cells: list[CellResult]) -> Path:
    store = Store(tmp_path)
    for cell in cells:
        store.save(cell)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": [c.key for c in cells]})
    return tmp_path


def _rows(table: Any) -> Any:
    return table.rows.set_index("strategy")


def test_rows_not_above_trivial_are_marked_and_never_ranked(tmp_path: Path) -> None:
    cells = [
        _cell("s0", "scratch", 0, 0.39), _cell("s1", "scratch", 1, 0.42), _cell("s2", "scratch", 2, 0.41),
        _cell("f0", "full", 0, 0.70), _cell("f1", "full", 1, 0.74), _cell("f2", "full", 2, 0.72),
        # a mean above 0.40 whose interval reaches below it: within noise of the trivial predictor
        _cell("p0", "probe", 0, 0.38, seconds=10.0), _cell("p1", "probe", 1, 0.50, seconds=10.0),
        _cell("o0", "once", 0, 0.40, seconds=1.0),  # one seed: its mean, equal to trivial, is not above
    ]  # fmt: skip
    report = build_report(_store(tmp_path, cells))
    (table,) = report.tables
    rows = _rows(table)
    assert table.trivial == pytest.approx(0.40) and table.trivial_predictor == "majority class"
    assert rows.loc["full", "above_trivial"] is True
    assert rows.loc["scratch", "above_trivial"] is False
    assert rows.loc["probe", "above_trivial"] is False and rows.loc["probe", "mean"] > 0.40
    assert rows.loc["once", "above_trivial"] is False
    # cheap but trivial rows would dominate the Pareto front; they get no mark and no ROI
    assert not rows.loc["probe", "pareto"] and not rows.loc["once", "pareto"] and rows.loc["full", "pareto"]
    assert rows.loc[["probe", "once"], "roi_per_device_hour"].isna().all()
    assert rows.loc["full", "roi_per_device_hour"] > 0
    assert "trivial predictor (majority class): top1 0.4000" in table.notes
    assert any(n.startswith("not above trivial") and "resnet18 / probe" in n for n in table.notes)
    assert set(report.summary["strategy"]) <= {"full"}  # only one rankable row: nothing to rank it against
    markdown = Markdown().render(report)
    assert "(not above trivial)" in markdown and "trivial predictor (majority class): top1 0.4000" in markdown
    document = json.loads(Json().render(report))
    assert document["tasks"][0]["trivial"] == pytest.approx(0.40)
    assert {r["strategy"]: r["above_trivial"] for r in document["tasks"][0]["rows"]}["scratch"] is False


def test_summary_ranks_only_rows_above_trivial(tmp_path: Path) -> None:
    cells = []
    for backbone, probe in (("resnet18", 0.80), ("mnv3", 0.30)):  # the probe beats trivial on one backbone only
        for strategy, score in (("scratch", 0.60), ("full", 0.70), ("probe", probe)):
            cells += [_cell(f"{backbone}{strategy}{i}", strategy, i, score + 0.02 * i, backbone=backbone)
                      for i in range(2)]  # fmt: skip
    summary = build_report(_store(tmp_path, cells)).summary.set_index("strategy")
    assert summary.loc["probe", "groups"] == 1 and summary.loc["probe", "mean_rank"] == 1.0
    assert summary.loc["full", "groups"] == 2 and summary.loc["full", "mean_rank"] == pytest.approx(1.5)
    assert summary.loc["scratch", "mean_rank"] == pytest.approx(2.5)


def test_a_table_where_nothing_beats_trivial_says_so(tmp_path: Path) -> None:
    cells = [_cell(f"{s}{i}", s, i, 0.40 + 0.01 * i - (0.02 if s == "full" else 0)) for s in ("scratch", "full")
             for i in range(3)]  # fmt: skip
    report = build_report(_store(tmp_path, cells))
    (table,) = report.tables
    assert "no strategy beats the trivial predictor on top1: nothing in this table is ranked" in table.notes
    assert report.summary.empty
    assert not table.rows["pareto"].any()


def test_old_results_without_trivial_are_read_and_unmarked(tmp_path: Path) -> None:
    cells = [_cell("s0", "scratch", 0, 0.1, trivial=None), _cell("f0", "full", 0, 0.2, trivial=None)]
    store = Store(_store(tmp_path, cells))
    path = store.cell_path("s0")
    data = json.loads(path.read_text())
    assert data["trivial"] == {}
    del data["trivial"], data["trivial_predictor"]  # as written before the trivial baseline was recorded
    path.write_text(json.dumps(data))
    assert store.load("s0") is not None
    (table,) = build_report(tmp_path).tables
    assert table.trivial is None and table.rows["above_trivial"].isna().all()
    assert not any("trivial" in note for note in table.notes)
    assert table.rows["pareto"].any()


def test_top5_that_cannot_discriminate_is_refused_as_the_ranking_metric(tmp_path: Path) -> None:
    cells = [_cell(f"{s}{i}", s, i, 0.5 + 0.1 * i + (0.2 if s == "full" else 0), top5=1.0, trivial=None)
             for s in ("scratch", "full") for i in range(2)]  # fmt: skip
    (table,) = build_report(_store(tmp_path, cells), metric="top5").tables
    assert table.metric == "top1"
    assert "top5 cannot discriminate: every seed of every row scores 1.0000; left out and ranked by top1 instead" in (
        table.notes
    )


# ---- the runner records it ----


def test_a_cell_records_its_trivial_score_on_the_test_split(tmp_path: Path, registry: Registry) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "linear_probe"}])
    data["tasks"] = data["tasks"][:1]
    data["tasks"][0]["dataset"] = tiny_dataset(shapes=["circle", "cross", "ring"], test=7)
    summary = run_suite(parse_suite(data, registry=registry), registry)
    (result,) = Store(summary.output).results()
    assert result.status == "ok", result.traceback
    spec = data["tasks"][0]["dataset"]
    test = registry.create("dataset", spec["name"], spec.get("options")).load("classification", "test")
    labels = [int(test[i][1]) for i in range(len(test))]
    majority = max(labels.count(c) for c in set(labels)) / len(labels)
    assert result.trivial_predictor == "majority class"
    assert result.trivial["top1"] == pytest.approx(majority) and "top5" not in result.trivial  # three classes
    # the majority class with probability 1: constant scores rank nothing, and its confidence is 1
    assert result.trivial["auroc_macro"] == 0.5 and result.trivial["ece"] == pytest.approx(1 - majority)

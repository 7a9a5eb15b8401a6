"""Intervals that hold the test set's sampling error: a bootstrap over test images and seeds together,
recomputed with scipy, from the per-image scores that classification cells store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bench_plugins.reporters.tables import Markdown
from bench_plugins.tasks.classification import Classification
from scipy import stats
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from harness.driver import run_suite
from harness.report import build_report
from harness.result import CellResult, Cost
from harness.stats import bootstrap_interval
from harness.store import Store, UnreadableDocument, parse_result
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite

#: Monte Carlo error of two 4000-resample percentile bounds, each of a distribution of spread ~0.02
TOLERANCE = 0.006


def _scipy_two_way(table: np.ndarray, resamples: int = 4000) -> Any:
    """scipy's bootstrap with the seed indices and the image indices as two samples, each resampled on its own."""

    def mean_of_drawn(seeds: np.ndarray, images: np.ndarray) -> float:
        return float(table[np.ix_(seeds.astype(int), images.astype(int))].mean())

    data = (np.arange(table.shape[0]), np.arange(table.shape[1]))
    return stats.bootstrap(
        data, mean_of_drawn, paired=False, vectorized=False, method="percentile", n_resamples=resamples,
        random_state=np.random.default_rng(7),
    ).confidence_interval  # fmt: skip


def _scores(rates: list[float], images: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((len(rates), images)) < np.asarray(rates)[:, None]).astype(float)


@pytest.mark.parametrize("rates", [[0.70, 0.75, 0.82], [0.60, 0.61]])
def test_two_way_bootstrap_matches_scipy(rates: list[float]) -> None:
    table = _scores(rates, 300)
    ours = bootstrap_interval(table)
    theirs = _scipy_two_way(table)
    assert ours.mean == pytest.approx(table.mean())
    assert ours.low == pytest.approx(theirs.low, abs=TOLERANCE)
    assert ours.high == pytest.approx(theirs.high, abs=TOLERANCE)
    assert ours.n == len(rates)


def test_one_seed_is_scipys_bootstrap_over_images() -> None:
    (row,) = _scores([0.8], 400)
    ours = bootstrap_interval([row])
    theirs = stats.bootstrap((row,), np.mean, method="percentile", n_resamples=4000, random_state=3)
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=TOLERANCE)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=TOLERANCE)


def test_seeds_that_agree_still_leave_the_test_sets_sampling_error() -> None:
    """Three seeds with the same 400 scores: the t interval over seeds has no width; the bootstrap's is
    the binomial one, 1.96 x sqrt(p(1-p)/400) on each side."""
    row = _scores([0.8], 400)[0]
    interval = bootstrap_interval([row, row, row])
    binomial = 1.96 * np.sqrt(row.mean() * (1 - row.mean()) / 400)
    assert interval.half_width == pytest.approx(binomial, rel=0.12)


def test_seed_spread_widens_the_interval_beyond_images_alone() -> None:
    agreeing, spread = _scores([0.7, 0.7, 0.7], 300), _scores([0.55, 0.7, 0.85], 300)
    assert bootstrap_interval(spread).half_width > 1.5 * bootstrap_interval(agreeing).half_width


def test_a_large_test_split_is_resampled_in_bounded_chunks() -> None:
    table = _scores([0.9, 0.91], 50_000)
    interval = bootstrap_interval(table, resamples=200)
    assert interval.low < table.mean() < interval.high and interval.high - interval.low < 0.02


# ---- per-image scores from the classification task ----


def test_classification_per_image_scores_average_to_torchmetrics_accuracy() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 7))
    batches = [(torch.rand(9, 3, 4, 4), torch.randint(0, 7, (9,))) for _ in range(3)]
    metrics, per_image = Classification().evaluate_per_image(model, iter(batches), num_classes=7)
    for k in (1, 5):
        reference = MulticlassAccuracy(7, top_k=k, average="micro")
        for images, labels in batches:
            reference.update(model(images), labels)
        assert metrics[f"top{k}"] == pytest.approx(float(reference.compute()))
        assert len(per_image[f"top{k}"]) == 27
        assert set(per_image[f"top{k}"]) <= {0.0, 1.0}
        assert np.mean(per_image[f"top{k}"]) == pytest.approx(metrics[f"top{k}"])


def test_a_classification_cell_stores_its_per_image_scores_and_the_report_bootstraps(registry, tmp_path: Path) -> None:
    data = tiny_suite(
        tmp_path / "out", seeds=[0, 1], strategies=[{"name": "full"}],
        tasks=[{"name": "cls", "kind": "classification", "dataset": tiny_dataset(test=12)}],
    )  # fmt: skip
    summary = run_suite(parse_suite(data, registry=registry), registry)
    results = Store(summary.output).results()
    assert [r.status for r in results] == ["ok", "ok"]
    for result in results:
        assert len(result.per_image["top1"]) == 12
        assert np.mean(result.per_image["top1"]) == pytest.approx(result.metrics["top1"])
        assert parse_result(result.to_json()).per_image == result.per_image  # the stored document reads back
    report = build_report(summary.output)
    (table,) = report.tables
    row = table.rows.iloc[0]
    assert row["ci_method"] == "bootstrap"
    expected = bootstrap_interval([r.per_image["top1"] for r in sorted(results, key=lambda r: r.seed)])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((expected.low, expected.high))
    note = "intervals of all rows: bootstrap over the test images and seeds together"
    assert note in table.notes
    assert note in " ".join(Markdown().render(report).split())  # wrapped prose, the same words


# ---- the report's choice of interval, on made-up results ----


def _cell(key: str, seed: int, top1: float, per_image: list[float] | None) -> CellResult:
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    cost = Cost(train_seconds=60.0, trainable_params=10, total_params=10, device_name="cpu")
    fields: dict[str, Any] = {"metrics": {"top1": top1}, "cost": cost}
    if per_image is not None:
        fields["per_image"] = {"top1": per_image}
    return CellResult(key, "ok", "cls", "resnet18", "full", seed, settings, **fields)


def _row(tmp_path: Path, cells: list[CellResult]) -> Any:
    store = Store(tmp_path)
    for cell in cells:
        store.save(cell)
    store.write_manifest({"settings": {}, "cells": [c.key for c in cells]})
    (table,) = build_report(tmp_path).tables
    return table.rows.iloc[0], table.notes


def test_cells_without_per_image_scores_keep_the_t_interval(tmp_path: Path) -> None:
    row, notes = _row(tmp_path, [_cell("a", 0, 0.70, None), _cell("b", 1, 0.74, None)])
    assert row["ci_method"] == "t"
    assert not any(note.startswith("intervals of") for note in notes)


def test_scores_that_do_not_average_to_the_metric_are_not_trusted(tmp_path: Path) -> None:
    row, _ = _row(tmp_path, [_cell("a", 0, 0.70, [1.0, 0.0]), _cell("b", 1, 0.50, [1.0, 0.0])])
    assert row["ci_method"] == "t"


def test_seeds_that_scored_different_numbers_of_images_are_not_bootstrapped_together(tmp_path: Path) -> None:
    row, _ = _row(tmp_path, [_cell("a", 0, 0.50, [1.0, 0.0]), _cell("b", 1, 0.50, [1.0, 0.0, 1.0, 0.0])])
    assert row["ci_method"] == "t"


def test_a_corrupt_per_image_list_moves_the_cell_aside(tmp_path: Path) -> None:
    document = _cell("a", 0, 0.5, [1.0, 0.0]).to_json()
    document["per_image"] = {"top1": [None, 1]}
    with pytest.raises(UnreadableDocument, match=r"per_image\.top1 is not a list of numbers"):
        parse_result(document)

"""The report's numbers on hand-built results: means, spreads, gains, ROI, and cells that are not ok."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from harness.cli import create_app
from harness.errors import BenchError
from harness.report import build_report
from harness.result import CellResult, Cost
from harness.store import Store


def _cell(key, strategy, seed, top1=None, status="ok", train_seconds=360.0, backbone="resnet18", reason=None):
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    cost = Cost(train_seconds=train_seconds, trainable_params=250, total_params=1000, peak_memory_bytes=2**30,
                samples_per_second=100.0, device_name="cpu (2 cores, 2 threads)")  # fmt: skip
    metrics = {"top1": top1} if top1 is not None else {}
    return CellResult(key, status, "cls", backbone, strategy, seed, settings, metrics=metrics, cost=cost, reason=reason)


@pytest.fixture
def results(tmp_path: Path) -> Path:
    store = Store(tmp_path)
    cells = [
        _cell("s0", "scratch", 0, 0.50), _cell("s1", "scratch", 1, 0.52), _cell("s2", "scratch", 2, 0.54),
        _cell("f0", "full", 0, 0.70), _cell("f1", "full", 1, 0.74), _cell("f2", "full", 2, 0.72, train_seconds=720.0),
        _cell("p0", "probe", 0, 0.60), _cell("p1", "probe", 1, status="failed", reason="RuntimeError: out of memory"),
        _cell("m0", "full", 0, 0.80, backbone="mnv3"),
    ]  # fmt: skip
    for cell in cells:
        store.save(cell)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": [c.key for c in cells]})
    return tmp_path


def test_means_spreads_gains_and_roi(results: Path) -> None:
    (table,) = build_report(results).tables
    rows = table.rows.set_index(["backbone", "strategy"])
    full = rows.loc[("resnet18", "full")]
    assert full["n"] == 3
    assert full["mean"] == pytest.approx(0.72)
    assert full["std"] == pytest.approx(0.02)  # sample standard deviation of 0.70, 0.74, 0.72
    assert full["gain"] == pytest.approx(0.72 - 0.52)
    assert full["train_seconds"] == pytest.approx(480.0)
    assert full["roi_per_device_hour"] == pytest.approx(0.20 / (480 / 3600))
    assert full["trainable_pct"] == pytest.approx(25.0)
    assert full["peak_memory_mib"] == pytest.approx(1024.0)
    assert rows.loc[("resnet18", "scratch"), "gain"] == pytest.approx(0.0)


def test_cells_that_are_not_ok_are_shown_not_dropped(results: Path) -> None:
    (table,) = build_report(results).tables
    probe = table.rows.set_index(["backbone", "strategy"]).loc[("resnet18", "probe")]
    assert probe["n"] == 1 and probe["mean"] == pytest.approx(0.60)
    assert probe["status"] == "1 ok, 1 failed: RuntimeError: out of memory"


def test_missing_baseline_is_a_note_not_a_crash(results: Path) -> None:
    (table,) = build_report(results).tables
    mnv3 = table.rows[table.rows["backbone"] == "mnv3"].iloc[0]
    assert math.isnan(mnv3["gain"]) and math.isnan(mnv3["roi_per_device_hour"])
    assert "no ok 'scratch' result for backbone mnv3: its gains are not computed" in table.notes


def test_baseline_and_metric_can_be_chosen(results: Path) -> None:
    (table,) = build_report(results, baseline="full").tables
    rows = table.rows.set_index(["backbone", "strategy"])
    assert rows.loc[("resnet18", "scratch"), "gain"] == pytest.approx(0.52 - 0.72)
    with pytest.raises(BenchError, match="--metric: no task reports 'top5'; allowed: top1"):
        build_report(results, metric="top5")
    with pytest.raises(BenchError, match="--baseline: unknown strategy 'nope'; allowed: scratch, full, probe"):
        build_report(results, baseline="nope")


def test_devices_are_never_mixed_silently(results: Path) -> None:
    store = Store(results)
    other = _cell("g0", "scratch", 3, 0.5)
    other.cost.device_name = "NVIDIA H100 80GB HBM3"
    store.save(other)
    manifest = store.manifest()
    manifest["cells"].append("g0")
    store.write_manifest(manifest)
    (table,) = build_report(results).tables
    rows = table.rows.set_index(["backbone", "strategy"])
    assert rows.loc[("resnet18", "scratch"), "device"] == "mixed: NVIDIA H100 80GB HBM3; cpu (2 cores, 2 threads)"
    assert rows.loc[("resnet18", "full"), "device"] == "cpu (2 cores, 2 threads)"
    assert any(note.startswith("costs were measured on 2 devices") for note in table.notes)


def test_gains_paired_on_shared_seeds_welch_otherwise_holm_within_the_table(tmp_path: Path) -> None:
    store = Store(tmp_path)
    scratch, probe, full = [0.50, 0.58, 0.54], [0.55, 0.64, 0.58], [0.9244, 1.0]
    cells = [_cell(f"s{i}", "scratch", i, v) for i, v in enumerate(scratch)]
    cells += [_cell(f"p{i}", "probe", i, v) for i, v in enumerate(probe)]  # seeds 0, 1, 2: paired
    cells += [_cell(f"f{i}", "full", i + 5, v) for i, v in enumerate(full)]  # seeds 5, 6: Welch
    for cell in cells:
        store.save(cell)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": [c.key for c in cells]})
    (table,) = build_report(tmp_path).tables
    rows = table.rows.set_index("strategy")
    paired, welch = stats.ttest_rel(probe, scratch), stats.ttest_ind(full, scratch, equal_var=False)
    assert rows.loc["probe", "gain_test"] == "paired t over 3 seeds"
    assert rows.loc["probe", "p_value"] == pytest.approx(paired.pvalue, rel=1e-9)
    assert rows.loc["full", "gain_test"] == "Welch"
    assert rows.loc["full", "p_value"] == pytest.approx(welch.pvalue, rel=1e-9)
    low, high = sorted([paired.pvalue, welch.pvalue])
    holm = {low: 2 * low, high: max(2 * low, high)}  # two tests in the table
    assert rows.loc["probe", "p_holm"] == pytest.approx(min(1.0, holm[paired.pvalue]), rel=1e-9)
    assert rows.loc["full", "p_holm"] == pytest.approx(min(1.0, holm[welch.pvalue]), rel=1e-9)
    assert any("Welch's t-test (1 gain: seeds not the baseline's)" in n and "Holm-corrected" in n for n in table.notes)
    # two seeds near 1: t(1) reaches past 1; top1 is a proportion, so the interval stops at 1
    assert rows.loc["full", "ci_high"] == 1.0
    assert rows.loc["full", "ci_low"] == pytest.approx(0.9622 - stats.t.ppf(0.975, 1) * 0.0756 / 2, abs=1e-6)
    text = CliRunner().invoke(create_app(), ["report", str(tmp_path)]).output
    assert f"| 0.9622 [{rows.loc['full', 'ci_low']:.4f}, 1.0000] (2) |" in text

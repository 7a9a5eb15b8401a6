"""A cell's peak memory is its own: on the CPU, the highest resident size above the cell's start."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from harness.cost import PeakMemory
from harness.devices import DeviceSetup
from harness.driver import run_suite
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_suite

CPU = DeviceSetup(torch.device("cpu"), None)
MIB = 2**20


def _hold(mib: int) -> None:
    """Touch `mib` MiB for a moment (the meter samples), then free them."""
    block = torch.ones(mib * MIB // 4)
    time.sleep(0.05)
    del block


def test_the_meter_measures_what_the_window_allocates_not_what_came_before() -> None:
    earlier = torch.ones(128 * MIB // 4)  # alive before the window: not the window's memory
    with PeakMemory(CPU) as memory:
        _hold(64)
    peak, kind = memory.stop()
    assert kind == "cell_peak_rss"
    assert 60 * MIB <= peak <= 64 * MIB + 32 * MIB, peak / MIB
    del earlier
    # a later, smaller window is not lifted by the earlier peak (the process's lifetime peak would be)
    with PeakMemory(CPU) as later:
        _hold(16)
    assert 14 * MIB <= later.stop()[0] <= 16 * MIB + 32 * MIB, later.stop()[0] / MIB


def test_identical_cells_in_one_process_report_the_same_peak(tmp_path: Path, registry: Registry) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}], seeds=[0, 1, 2], executor="sequential")
    data["tasks"] = data["tasks"][:1]  # classification, 16 images of resnet18
    summary = run_suite(parse_suite(data, registry=registry), registry)
    results = sorted(Store(summary.output).results(), key=lambda r: r.started_at)
    assert [r.status for r in results] == ["ok"] * 3
    peaks = [r.cost.peak_memory_bytes / MIB for r in results]
    assert {r.cost.peak_memory_kind for r in results} == {"cell_peak_rss"}
    assert min(peaks) > 50, peaks  # resnet18's weights, gradients and AdamW state alone are ~170 MiB
    # the first cell also pays the process's one-off costs (libraries' caches and pools it leaves
    # behind); the cells after it, the same work, agree: the column no longer climbs cell by cell
    second, third = peaks[1:]
    assert abs(second - third) <= 0.15 * max(second, third), peaks
    assert peaks[0] <= 1.3 * second, peaks

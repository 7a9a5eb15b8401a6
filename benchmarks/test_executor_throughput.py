"""Cells per hour of the quickstart under `sequential`, `processes` (2 slots) and `ray` (2 CPUs), as ratios.

All three run the quickstart's nine target cells (one seed) back to back in one session, each
into a fresh results directory that already holds the pretraining checkpoint, so what is
timed is the cells themselves: `sequential` with every core in one process (the default), the
others with the cores shared out, one thread per worker. `processes-1-slot` runs one worker with
one thread: the same arithmetic per cell as two slots, so the ratio between them is the
executor's own scaling from one slot to two. Run with
`pytest benchmarks/test_executor_throughput.py --benchmark-only -s`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cli import suite_path
from harness.driver import run_suite
from harness.registry import Registry
from harness.suite import load_suite, with_overrides


def _timed(suite: Any, registry: Registry, output: Path, executor: dict[str, Any], source: Path) -> float:
    shutil.copytree(source / "pretrain", output / "pretrain")
    run = with_overrides(suite, output=str(output), executor=executor)
    started = time.perf_counter()
    summary = run_suite(run, registry)
    seconds = time.perf_counter() - started
    assert summary.statuses == {"ok": 9}, summary
    return seconds


def test_cells_per_hour_by_executor(benchmark, tmp_path: Path) -> None:
    registry = Registry(entry_points=False)
    suite = with_overrides(load_suite(suite_path(Path("quickstart")), registry), seeds=[0])
    # the pretraining stage once, outside the timings (it is the same job under every executor)
    source = tmp_path / "pretrained"
    first_task = suite.model_dump()["tasks"][:1]
    run_suite(with_overrides(suite, output=str(source), tasks=first_task, strategies=[{"name": "linear_probe"}]))
    seconds: dict[str, float] = {}
    executors: dict[str, dict[str, Any]] = {
        "sequential": {"name": "sequential"},
        "processes-1-slot": {"name": "processes", "options": {"slots": 1, "threads": 1}},
        "processes": {"name": "processes", "options": {"slots": 2, "threads": 1}},
    }
    try:
        import ray  # noqa: F401

        executors["ray"] = {"name": "ray", "options": {"cpus_per_cell": 1, "init": {"num_cpus": 2}}}
    except ImportError:
        pass

    def measure_all() -> None:  # back to back, in one session: the ratios are what counts
        for name, executor in executors.items():
            seconds[name] = _timed(suite, registry, tmp_path / name, executor, source)

    benchmark.pedantic(measure_all, rounds=1)
    per_hour = {name: 9 * 3600 / s for name, s in seconds.items()}
    ratios = {name: seconds["sequential"] / s for name, s in seconds.items()}
    one_slot = {name: seconds["processes-1-slot"] / s for name, s in seconds.items()}
    benchmark.extra_info.update(
        seconds=seconds, cells_per_hour=per_hour, ratio_to_sequential=ratios, ratio_to_one_slot=one_slot
    )
    print()
    for name in seconds:
        print(
            f"{name:>19}: {seconds[name]:6.1f} s, {per_hour[name]:6.0f} cells/h, "
            f"x{ratios[name]:.2f} sequential, x{one_slot[name]:.2f} processes-1-slot"
        )
    if "ray" not in seconds:
        pytest.skip("ray is not installed: only sequential and processes measured")

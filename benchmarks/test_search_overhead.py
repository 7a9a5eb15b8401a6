"""What a search adds per trial over the same cells run plainly, as a ratio measured back to back.

The search side is a `grid` search over four learning rates (one seed): four trials and one final
run, one `run_suite`. The plain side is one `run_suite` of five cells of the same cost without a
search: a sweep of five learning rates (a rate does not change a step's time). Both sides start
from empty results directories and alternate for `ROUNDS` rounds after an uncounted warm-up
round; the median of the paired ratios is reported (the goal is at most 1.02).
Run with `pytest benchmarks/test_search_overhead.py --benchmark-only -s`.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from harness.driver import run_suite
from harness.registry import Registry
from harness.search_summary import read_summaries
from harness.suite import parse_suite

ROUNDS = 5
RATES = [1e-3, 2e-3, 4e-3, 8e-3]


def _suite(output: Path, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "overhead",
        "output": str(output),
        "seeds": [0],
        "device": "cpu",
        "training": {"epochs": 2, "batch_size": 16, "optimizer": "adamw", "threads": 2},
        "tasks": [
            {
                "name": "cls",
                "kind": "classification",
                "dataset": {"name": "shapes", "options": {"image_size": 32, "train": 96, "val": 32, "test": 32}},
            }
        ],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "full"}],
    }
    data.update(changes)
    return data


def _timed(registry: Registry, *suites: dict[str, Any]) -> float:
    started = time.perf_counter()
    for data in suites:
        summary = run_suite(parse_suite(data, "overhead.toml", registry), registry)
        assert summary.failed == 0, summary
    return time.perf_counter() - started


def test_search_overhead_per_trial(benchmark, tmp_path: Path) -> None:
    registry = Registry(entry_points=False)
    ratios: list[float] = []

    def measure(round_: int) -> None:
        out = tmp_path / f"search-{round_}"
        search = {"method": "grid", "seed": 1000, "space": {"training": {"lr": RATES}}}
        searched = _timed(registry, _suite(out, search=search))
        assert read_summaries(out)[0]["finished"]
        training = {**_suite(out)["training"], "lr": [*RATES, 1.6e-2]}
        plain = _timed(registry, _suite(tmp_path / f"sweep-{round_}", training=training))
        ratios.append(searched / plain)

    measure(-1)  # warm-up, not counted: the process's first run pays imports (Optuna) and first allocations
    ratios.clear()
    rounds = iter(range(ROUNDS))
    benchmark.pedantic(lambda: measure(next(rounds)), rounds=ROUNDS, iterations=1)
    median = statistics.median(ratios)
    benchmark.extra_info.update({"ratios": ratios, "median_ratio": median})
    print(f"\nsearch / plain, {ROUNDS} paired rounds: median {median:.3f}, " + ", ".join(f"{r:.3f}" for r in ratios))

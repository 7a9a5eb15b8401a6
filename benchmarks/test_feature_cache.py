"""The cached linear probe against the uncached one on the quickstart's classification task, as a
time ratio measured in one run.

Both cells are the quickstart's `shapes-cls` task on its pretrained resnet18 (the suite's own
pretraining stage, run once and reused), the same seed and the same epochs; one probe computes
the frozen backbone's features once, the other runs the backbone every epoch. The cost compared
is each cell's training plus evaluation seconds, as the report counts them. Run with
`pytest benchmarks/test_feature_cache.py --benchmark-only -s`; set BENCH_PROBE_EPOCHS to change
the epoch counts measured (default "4,30": the quickstart's, and a usual probe's length).
"""

from __future__ import annotations

import os
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from harness.driver import run_suite
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite


def _suite(output: Path, epochs: int) -> dict[str, Any]:
    quickstart = tomllib.loads(files("bench_suites").joinpath("quickstart.toml").read_text())
    task = next(t for t in quickstart["tasks"] if t["name"] == "shapes-cls")
    return {
        "name": "probe-cache",
        "output": str(output),
        "seeds": [0],
        "device": "cpu",
        "training": {**quickstart["training"], "epochs": epochs, "threads": 2},
        "pretrain": quickstart["pretrain"],
        "tasks": [task],
        "backbones": [b for b in quickstart["backbones"] if b.get("label", b["name"]) == "resnet18"][:1],
        "strategies": [
            {"name": "linear_probe", "label": "cached"},
            {"name": "linear_probe", "label": "uncached", "options": {"cache_features": False}},
        ],
    }


def test_cached_probe_speed(benchmark, tmp_path_factory) -> None:
    output = tmp_path_factory.mktemp("probe-cache")
    registry = Registry(entry_points=False)
    measured: dict[int, dict[str, Any]] = {}

    def run(epochs: int) -> None:
        # one results folder: the pretraining stage runs once, the cells differ by their epochs
        summary = run_suite(parse_suite(_suite(output, epochs), registry=registry), registry)
        epochs_of = {r.key: r.settings["training"]["epochs"] for r in Store(summary.output).results()}
        by_label = {r.strategy: r for r in Store(summary.output).results() if epochs_of[r.key] == epochs}
        cached, uncached = by_label["cached"], by_label["uncached"]
        seconds = {k: r.cost.train_seconds + r.cost.eval_seconds for k, r in by_label.items()}
        measured[epochs] = {
            "ratio": seconds["uncached"] / seconds["cached"],
            "cached_seconds": seconds["cached"],
            "uncached_seconds": seconds["uncached"],
            "cached_top1": cached.metrics["top1"],
            "uncached_top1": uncached.metrics["top1"],
            "feature_cache": cached.notes.get("feature_cache"),
        }

    counts = [int(n) for n in os.environ.get("BENCH_PROBE_EPOCHS", "4,30").split(",")]
    benchmark.pedantic(lambda: [run(n) for n in counts], rounds=1, iterations=1)
    for epochs, row in measured.items():
        benchmark.extra_info[f"epochs_{epochs}"] = row
        print(
            f"\n{epochs} epochs: uncached / cached seconds = {row['ratio']:.1f}x "
            f"({row['uncached_seconds']:.1f} s / {row['cached_seconds']:.1f} s); "
            f"top1 {row['uncached_top1']:.4f} / {row['cached_top1']:.4f}; cache {row['feature_cache']}"
        )
        assert row["feature_cache"] == "used"

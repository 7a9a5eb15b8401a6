"""Running cells and suites: learning, divergence, failure isolation, pretraining cache, costs, events."""

from __future__ import annotations

from pathlib import Path

import torch

from harness import Dataset, ParamGroup, Strategy, TaskModel, hookimpl
from harness.driver import run_suite
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite


class Explodes(Strategy):
    """Raises while preparing the model."""

    name = "explodes"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        raise RuntimeError("boom in prepare")


class NanLoss(Strategy):
    """Adds a NaN regulariser."""

    name = "nan_loss"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        return [ParamGroup(params=list(model.parameters()), name="all")]

    def extra_loss(self, model: TaskModel) -> torch.Tensor:
        return torch.tensor(float("nan"))


class RecordingPlugin:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @hookimpl
    def bench_strategies(self):
        return [Explodes, NanLoss]

    @hookimpl
    def bench_cell_started(self, cell):
        self.events.append(("started", cell.key))

    @hookimpl
    def bench_cell_finished(self, cell, result):
        self.events.append(("finished", result.status))


def _classification_only(tmp_path: Path, **overrides):
    data = tiny_suite(tmp_path / "out", **overrides)
    data["tasks"] = data["tasks"][:1]
    return data


def test_a_classification_cell_learns(tmp_path: Path, registry: Registry) -> None:
    data = _classification_only(
        tmp_path,
        strategies=[{"name": "full"}],
        training={"epochs": 6, "batch_size": 32, "optimizer": "adamw", "lr": 2e-3, "threads": 2},
    )
    data["tasks"][0]["dataset"] = tiny_dataset(shapes=["circle", "cross"], clutter=0.1, train=256, val=64, test=128)
    summary = run_suite(parse_suite(data, registry=registry), registry)
    (result,) = Store(summary.output).results()
    assert result.status == "ok", result.traceback
    losses = [epoch["train_loss"] for epoch in result.curve]
    assert len(losses) == 6 and losses[-1] < 0.5 * losses[0]
    # two classes, 128 test images: chance is 0.5 +- 0.044, so 0.65 is learning, not luck
    assert result.metrics["top1"] >= 0.65
    assert result.best["metric"] == "top1" and 1 <= result.best["epoch"] <= 6


def test_failures_are_recorded_and_the_suite_goes_on(tmp_path: Path) -> None:
    plugin = RecordingPlugin()
    registry = Registry(plugins=[(plugin, "test-plugin")], entry_points=False)
    data = _classification_only(tmp_path, strategies=[{"name": "explodes"}, {"name": "nan_loss"}, {"name": "full"}])
    summary = run_suite(parse_suite(data, registry=registry), registry)
    results = {r.strategy: r for r in Store(summary.output).results()}
    assert results["explodes"].status == "failed"
    assert results["explodes"].reason == "RuntimeError: boom in prepare"
    assert "Traceback" in results["explodes"].traceback
    assert results["nan_loss"].status == "diverged"
    assert "non-finite loss" in results["nan_loss"].reason
    assert results["full"].status == "ok"
    assert summary.failed == 2
    assert [e[0] for e in plugin.events] == ["started", "finished"] * 3
    assert [e[1] for e in plugin.events if e[0] == "finished"] == ["failed", "diverged", "ok"]


def test_costs_and_provenance_are_recorded(tmp_path: Path, registry: Registry) -> None:
    data = _classification_only(tmp_path, strategies=[{"name": "linear_probe"}])
    summary = run_suite(parse_suite(data, registry=registry), registry)
    (result,) = Store(summary.output).results()
    cost = result.cost
    assert 0 < cost.trainable_params < cost.total_params
    assert cost.trainable_params == 512 * 5 + 5  # the linear head of resnet18 over 5 classes
    assert cost.flops_per_sample and cost.flops_per_sample > 1e6
    assert cost.train_samples == 16 and cost.train_steps == 2
    assert cost.samples_per_second > 0 and cost.train_seconds > 0 and cost.eval_seconds > 0
    assert cost.wall_seconds >= cost.train_seconds
    assert cost.peak_memory_bytes > 0 and cost.peak_memory_kind == "cell_peak_rss"
    assert cost.device == "cpu"
    assert torch.__version__.startswith(result.provenance["packages"]["torch"])
    assert result.provenance["seed"] == 0


def test_max_steps_cuts_the_budget(tmp_path: Path, registry: Registry) -> None:
    data = _classification_only(tmp_path, strategies=[{"name": "full"}])
    data["training"].update(epochs=5, max_steps=3)
    summary = run_suite(parse_suite(data, registry=registry), registry)
    (result,) = Store(summary.output).results()
    assert result.cost.train_steps == 3
    assert [e["step"] for e in result.curve] == [2, 3]


def test_pretraining_runs_once_and_is_reused(tmp_path: Path, registry: Registry) -> None:
    data = _classification_only(
        tmp_path,
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(shapes=["star", "hexagon"], seed=5)}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
        strategies=[{"name": "linear_probe"}, {"name": "scratch"}],
    )
    suite = parse_suite(data, registry=registry)
    first = run_suite(suite, registry)
    store = Store(first.output)
    (checkpoint,) = store.pretrain_dir.glob("*.pt")
    stamp = checkpoint.stat().st_mtime_ns
    probe = next(r for r in store.results() if r.strategy == "linear_probe")
    # the probe's frozen backbone is exactly the pretrained one
    state = torch.load(checkpoint, weights_only=True)
    assert set(state) and all(k.startswith("stages.") for k in state)

    data["strategies"].append({"name": "full"})
    second = run_suite(parse_suite(data, registry=registry), registry)
    assert (second.reused, second.statuses["ok"]) == (2, 1)  # only the new cell ran
    assert checkpoint.stat().st_mtime_ns == stamp  # not pretrained again
    assert probe.settings["backbone"]["weights"] == f"pretrain:src@{checkpoint.stem}"


class Unreadable(Dataset):
    """A dataset whose files are missing."""

    name = "unreadable"
    kinds = ("classification",)

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        raise FileNotFoundError("/data/unreadable/train is missing")

    def class_names(self, kind: str) -> list[str]:
        return ["a", "b"]


class UnreadablePlugin:
    @hookimpl
    def bench_datasets(self):
        return [Unreadable]


def test_a_failed_pretraining_fails_its_cells_only(tmp_path: Path) -> None:
    registry = Registry(plugins=[(UnreadablePlugin(), "test-plugin")], entry_points=False)
    data = _classification_only(
        tmp_path,
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": {"name": "unreadable"}}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
        strategies=[{"name": "linear_probe"}, {"name": "scratch"}],
    )
    summary = run_suite(parse_suite(data, registry=registry), registry)
    results = {r.strategy: r for r in Store(summary.output).results()}
    assert results["scratch"].status == "ok"  # needs no pretrained weights
    assert results["linear_probe"].status == "failed"
    assert results["linear_probe"].reason == (
        "pretraining stage 'src' failed: failed: FileNotFoundError: /data/unreadable/train is missing"
    )
    assert summary.failed == 1

"""The training lifecycle: the order and arguments of the strategy's callbacks, the evaluated model,
opt-in arguments, checks that see the backbone, run events as hooks, provenance and keys."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from harness import hookimpl
from harness.callbacks import call
from harness.cli import create_app
from harness.devices import resolve_device
from harness.driver import run_suite
from harness.grid import plan_cells
from harness.loaders import make_loader
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite
from harness.testing import tiny_model, train_briefly
from harness.training import evaluate
from tests import lifecycle_plugins
from tests.conftest import tiny_suite


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry([(lifecycle_plugins, "lifecycle-test")], entry_points=False)


def test_callbacks_run_in_the_documented_order_with_the_arguments_they_ask_for(registry: Registry) -> None:
    strategy = registry.create("strategy", "recording")
    train_briefly(strategy, steps=4, epochs=2, max_steps=None, batch_size=4)  # 8 images: 2 steps an epoch
    names = [c[0] for c in strategy.calls]
    epoch = ["on_epoch_start", *["on_step_start", "extra_loss", "on_step_end"] * 2, "on_epoch_end"]
    assert names == ["prepare", *epoch, *epoch, "on_train_end"]
    calls = strategy.calls
    # (name, *what it saw, model.training, grad enabled)
    assert calls[0] == ("prepare", True, 2, True, True)  # no optimizer yet; the epoch count is known
    assert calls[1] == ("on_epoch_start", 0, True, True, True)  # the optimizer exists
    assert calls[9] == ("on_epoch_start", 1, True, False, True)  # before model.train(): eval after a validation
    assert calls[2] == ("on_step_start", 0, True, True)
    assert calls[3] == ("extra_loss", 4, (4, 5), True, True)  # the batch and its logits (5 classes)
    assert calls[4] == ("on_step_end", 0, True, 0, True, True)  # the optimizer; the loss a scalar tensor
    assert calls[8] == ("on_epoch_end", 0, True, True, True)
    assert [c[1] for c in calls if c[0] == "on_step_end"] == [0, 1, 2, 3]  # counted over the run
    assert calls[-1] == ("on_train_end", True, True)


def test_the_model_on_train_end_returns_is_the_one_validated_last_and_tested(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_plugins.tasks.classification import Classification

    evaluated: list[torch.nn.Module] = []
    original = Classification.evaluate_per_image  # what the loop calls for validation and test alike

    def recording(self: Classification, model: Any, batches: Any, num_classes: int) -> Any:
        evaluated.append(model)
        return original(self, model, batches, num_classes)

    monkeypatch.setattr(Classification, "evaluate_per_image", recording)
    strategy = registry.create("strategy", "recording")
    run = train_briefly(strategy, steps=4, epochs=2, max_steps=None, batch_size=4)
    assert run.outcome.model is strategy.chosen
    # epoch 1's validation sees the trained model; epoch 2's (the last) and the test see the chosen one
    assert [m is run.model for m in evaluated] == [True, False, False]
    assert [m is strategy.chosen for m in evaluated] == [False, True, True]
    task, _, dataset = tiny_model("classification")
    setup = resolve_device("cpu", amp=False)
    test = make_loader(dataset.load("classification", "test"), task, 4, setup, 0, train=False)
    classes = len(dataset.class_names("classification"))
    assert run.outcome.metrics == evaluate(strategy.chosen, task, test, setup, classes)
    assert not torch.equal(next(run.model.head.parameters()), next(strategy.chosen.head.parameters()))


def test_a_callback_receives_only_the_arguments_its_signature_names() -> None:
    seen: dict[str, Any] = {}

    class Old:
        def extra_loss(self, model: str) -> None:
            seen["old"] = model

        def on_step_end(self, model: str, step: int, optimizer: str) -> None:
            seen["some"] = (model, step, optimizer)

        def on_epoch_end(self, m: str, e: int, **everything: Any) -> None:
            seen["all"] = (m, e, sorted(everything))

    old = Old()
    call(old.extra_loss, "model", batch="b", outputs="o", context="c")
    call(old.on_step_end, "model", 3, optimizer="opt", loss="l", context="c")
    call(old.on_epoch_end, "model", 1, train_loss=0.5, context="c")
    assert seen == {"old": "model", "some": ("model", 3, "opt"), "all": ("model", 1, ["context", "train_loss"])}


def _suite(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data = tiny_suite(tmp_path / "out", **overrides)
    data["tasks"] = data["tasks"][:1]
    return data


def test_a_strategy_check_sees_the_backbone_when_the_suite_is_planned(tmp_path: Path, registry: Registry) -> None:
    data = _suite(tmp_path, strategies=[{"name": "needs_wide"}], backbones=[{"name": "resnet18"}, {"name": "resnet50"}])
    cells = {c.backbone: c for c in plan_cells(parse_suite(data, registry=registry), registry)}
    assert cells["resnet18"].skip_reason == "needs a last stage of >= 1000 channels, resnet18 has 512"
    assert cells["resnet50"].skip_reason is None


class Events:
    """Every run event, as a logger would see it."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @hookimpl
    def bench_run_started(self, suite, cells, done):
        self.events.append(("run_started", suite.name, len(cells), done))

    @hookimpl
    def bench_cell_started(self, cell, slot, epochs):
        self.events.append(("cell_started", cell.key, epochs))

    @hookimpl
    def bench_epoch_started(self, cell, epoch, steps, epochs):
        self.events.append(("epoch_started", cell.key, epoch, steps, epochs))

    @hookimpl
    def bench_step(self, cell, step, steps, loss, lr, samples_per_second):
        self.events.append(("step", cell.key, step, steps, loss, lr, samples_per_second))

    @hookimpl
    def bench_epoch_finished(self, cell, epoch, step, train_loss, val):
        self.events.append(("epoch_finished", cell.key, epoch, step, train_loss, val))

    @hookimpl
    def bench_cell_finished(self, cell, result, slot):
        self.events.append(("cell_finished", cell.key, result.status))

    @hookimpl
    def bench_run_finished(self, suite, summary):
        self.events.append(("run_finished", dict(summary.statuses)))

    def of(self, name: str, key: str | None = None) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == name and (key is None or e[1] == key)]


EXECUTORS = {
    "sequential": "sequential",
    "processes": {"name": "processes", "options": {"slots": 2}},
    "ray": {"name": "ray", "options": {"init": {"num_cpus": 2}}},
}


@pytest.mark.parametrize("executor", list(EXECUTORS))
def test_run_events_reach_the_hooks_from_any_executor(tmp_path: Path, executor: str) -> None:
    if executor == "ray":
        pytest.importorskip("ray")
    registry = Registry([(lifecycle_plugins, "lifecycle-test")], entry_points=False)
    events = Events()
    registry.pm.register(events)
    data = _suite(
        tmp_path,
        strategies=[{"name": "full"}, {"name": "linear_probe"}],
        training={"epochs": 2, "batch_size": 4, "optimizer": "sgd", "lr": 0.01, "schedule": "constant", "threads": 1},
        executor=EXECUTORS[executor],
    )
    summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 2}
    assert events.events[0] == ("run_started", "tiny", 2, 0)
    assert events.events[-1] == ("run_finished", {"ok": 2})
    for result in Store(summary.output).results():
        key = result.key
        assert events.of("cell_started", key) == [("cell_started", key, 2)]
        assert [e[2:] for e in events.of("epoch_started", key)] == [(0, 4, 2), (1, 4, 2)]
        finished = events.of("epoch_finished", key)
        # the epoch events carry what the result's curve holds
        assert [(e[2] + 1, e[3], e[4], e[5]) for e in finished] == [
            (c["epoch"], c["step"], c["train_loss"], c["val"]) for c in result.curve
        ]
        steps = events.of("step", key)
        assert sum(e[3] for e in steps) == 8 and steps[-1][2] == 8  # every step counted, the last one reported
        assert all(e[5] == 0.01 and e[6] > 0 and e[4] > 0 for e in steps)  # lr, samples/s, loss
        assert events.of("cell_finished", key) == [("cell_finished", key, "ok")]


def test_each_cell_records_the_package_and_version_of_its_components(tmp_path: Path, registry: Registry) -> None:
    data = _suite(tmp_path, strategies=[{"name": "defaulted"}], training={"epochs": 1, "max_steps": 1})
    summary = run_suite(parse_suite(data, registry=registry), registry)
    (result,) = Store(summary.output).results()
    plugins = result.provenance["plugins"]
    ours = importlib.metadata.packages_distributions()["harness"][0]
    assert ours == "finetune-bench"
    bench = importlib.metadata.version(ours)
    assert plugins["task"] == {
        "name": "classification",
        "provider": "bench (built-in)",
        "distribution": ours,
        "version": bench,
    }
    assert plugins["dataset"]["name"] == "shapes" and plugins["backbone"]["name"] == "resnet18"
    assert plugins["strategy"]["name"] == "defaulted" and plugins["strategy"]["provider"] == "lifecycle-test"


def test_bench_plugins_shows_versions() -> None:
    result = CliRunner().invoke(create_app(), ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert f"finetune-bench {importlib.metadata.version('finetune-bench')}" in result.output


def test_a_changed_default_makes_a_new_cell_and_an_explicit_default_does_not(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def key(options: dict[str, Any]) -> str:
        data = _suite(tmp_path, strategies=[{"name": "defaulted", "options": options}])
        (cell,) = plan_cells(parse_suite(data, registry=registry), registry)
        return cell.key

    omitted, explicit = key({}), key({"strength": 1.0})
    assert omitted == explicit  # the same experiment, written two ways
    # a new release of the plugin changes the default: the same suite file is a new experiment
    field = lifecycle_plugins.DefaultedOptions.model_fields["strength"]
    monkeypatch.setattr(field, "default", 2.0)
    lifecycle_plugins.DefaultedOptions.model_rebuild(force=True)
    try:
        assert key({}) != omitted
        assert key({"strength": 1.0}) == omitted
    finally:
        monkeypatch.undo()
        lifecycle_plugins.DefaultedOptions.model_rebuild(force=True)

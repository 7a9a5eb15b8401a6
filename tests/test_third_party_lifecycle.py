"""A third party's strategies on the lifecycle API (tests/third_party_lifecycle.py, public API only): WiSE-FT
and SWA evaluate what they claim, through `train_briefly` and through a suite; a strategy written for the
earlier API, and callbacks asking for only some of the arguments, keep working."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.testing import assert_close

from harness import ParamGroup, Strategy, TaskModel
from harness.devices import resolve_device
from harness.driver import run_suite
from harness.loaders import make_loader
from harness.registry import Registry
from harness.store import planned_results
from harness.suite import parse_suite
from harness.testing import tiny_model, train_briefly
from harness.training import evaluate
from tests import third_party_lifecycle as tp
from tests.conftest import tiny_dataset, tiny_suite


class RecordedWiseFT(tp.WiseFT):
    def on_train_end(self, model: TaskModel) -> None:
        self.tuned = {k: v.clone() for k, v in model.state_dict().items()}
        return super().on_train_end(model)


class RecordedSWA(tp.SWA):
    def on_epoch_end(self, model: TaskModel, epoch: int, context: Any) -> None:
        super().on_epoch_end(model, epoch, context)
        self.snapshots = [*getattr(self, "snapshots", []), [p.detach().clone() for p in model.parameters()]]


def test_wise_ft_at_alpha_0_evaluates_the_pretrained_backbone_exactly() -> None:
    run = train_briefly(tp.WiseFT({"alpha": 0.0}), steps=2)
    assert run.changed == run.names("head.")
    assert {n for n in run.changed_buffers if not n.endswith("num_batches_tracked")} == set()


def test_wise_ft_interpolates_every_backbone_weight_exactly() -> None:
    strategy = RecordedWiseFT({"alpha": 0.3})
    run = train_briefly(strategy, steps=2)
    assert run.changed == run.names()
    for key, value in run.model.state_dict().items():
        tuned = strategy.tuned[key]
        if key.startswith("backbone.") and value.is_floating_point():
            start = strategy.pretrained[key.removeprefix("backbone.")]
            assert_close(value, 0.7 * start + 0.3 * tuned, rtol=1e-6, atol=1e-6)
        else:  # the new parts, the input normalisation, BatchNorm's step counters: as fine-tuned
            assert torch.equal(value, tuned), key
    assert run.outcome.model is run.model


def test_wise_ft_refuses_an_alpha_outside_0_1() -> None:
    with pytest.raises(ValueError, match=r"alpha = 1.5, not in \[0, 1\]"):
        train_briefly(tp.WiseFT({"alpha": 1.5}), steps=1)


def test_swa_evaluates_the_average_of_the_last_epochs_with_recomputed_batchnorm() -> None:
    strategy = RecordedSWA({"epochs": 2})
    run = train_briefly(strategy, steps=3, batch_size=8)  # the 8 training images in one batch: 3 epochs of 1 step
    averaged = run.outcome.model
    assert averaged is not None and averaged is not run.model
    assert len(strategy.snapshots) == 3 and strategy.count == 2
    for parameter, first, second in zip(averaged.parameters(), *strategy.snapshots[1:], strict=True):
        assert_close(parameter, (first + second) / 2)
    # the trained model keeps the last epoch's weights
    assert all(torch.equal(p, s) for p, s in zip(run.model.parameters(), strategy.snapshots[2], strict=True))
    # BatchNorm statistics: what torch's update_bn computes for the averaged weights
    expected = copy.deepcopy(averaged)
    torch.optim.swa_utils.update_bn(strategy.context.train_loader, expected)
    for (name, buffer), (_, reference) in zip(averaged.named_buffers(), expected.named_buffers(), strict=True):
        assert_close(buffer, reference, msg=name)
    # the last validation and the test are the averaged model's
    task, _, dataset = tiny_model("classification")
    setup = resolve_device("cpu", amp=False)
    for split, metrics in (("val", run.outcome.curve[-1]["val"]), ("test", run.outcome.metrics)):
        loader = make_loader(dataset.load("classification", split), task, 8, setup, 0, train=False)
        assert evaluate(averaged, task, loader, setup, strategy.context.num_classes) == metrics, split


class SomeArguments(Strategy):
    """Callbacks that name only some of the arguments on offer, or take them all as **kwargs."""

    name = "some_arguments"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        self.seen: list[tuple[Any, ...]] = []
        model.requires_grad_(True)
        return [ParamGroup(params=list(model.parameters()), name="all")]

    def extra_loss(self, model: TaskModel, outputs: torch.Tensor) -> None:
        self.seen.append(("extra_loss", tuple(outputs.shape)))

    def on_step_end(self, model: TaskModel, step: int, optimizer: torch.optim.Optimizer) -> None:
        self.seen.append(("on_step_end", step, optimizer))

    def on_epoch_end(self, model: TaskModel, epoch: int, **offered: Any) -> None:
        self.seen.append(("on_epoch_end", epoch, sorted(offered)))


def test_a_callback_may_ask_for_only_some_of_the_arguments() -> None:
    strategy = SomeArguments()
    run = train_briefly(strategy, steps=2)  # 2 steps per epoch: one epoch
    classes = strategy.context.num_classes
    assert strategy.seen == [
        ("extra_loss", (4, classes)),
        ("on_step_end", 0, run.optimizer),
        ("extra_loss", (4, classes)),
        ("on_step_end", 1, run.optimizer),
        ("on_epoch_end", 0, ["context", "notes", "optimizer", "schedule", "train_loss"]),
    ]


def test_a_strategy_written_for_the_earlier_api_runs_unchanged() -> None:
    strategy = tp.Legacy()
    run = train_briefly(strategy, steps=4)  # 2 epochs of 2 steps
    assert run.changed == run.names()
    assert strategy.context is not None
    assert strategy.counts == {"task": "classification", "epochs": 2, "extra_loss": 4}


@pytest.mark.parametrize("kind", ["segmentation", "detection"])
def test_swa_recomputes_batchnorm_with_the_tasks_own_forward(kind: str) -> None:
    strategy = tp.SWA({"epochs": 1})
    run = train_briefly(strategy, kind, steps=1, batch_size=8)
    averaged = run.outcome.model
    assert averaged is not None and averaged is not run.model
    counters = [b for n, b in averaged.named_buffers() if n.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 1 for c in counters)  # reset, then the one training batch


def test_the_third_party_strategies_in_a_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated: list[TaskModel] = []
    train_end = tp.SWA.on_train_end

    def keep(self: tp.SWA, model: TaskModel, context: Any) -> TaskModel:
        evaluated.append(train_end(self, model, context))
        return evaluated[-1]

    monkeypatch.setattr(tp.SWA, "on_train_end", keep)
    data = tiny_suite(
        tmp_path / "out",
        strategies=[{"name": "tp_wise_ft", "options": {"alpha": 0.5}}, {"name": "tp_swa"}, {"name": "tp_legacy"}],
    )
    small = tiny_dataset(train=8, val=4, test=4)
    data["tasks"] = [{**data["tasks"][0], "dataset": small}]  # classification
    data["training"].update(epochs=2)  # 8 images in batches of 8: 2 epochs of 1 step
    registry = Registry(plugins=[(tp, "third-party-test")], entry_points=False)
    summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 3}
    results = {r.strategy: r for r in planned_results(tmp_path / "out")}
    # options enter the cell's settings with their defaults resolved
    assert results["tp_swa"].settings["strategy"]["options"] == {"batchnorm": None, "epochs": 2}
    assert results["tp_swa"].notes == {"averaged_epochs": 2}  # what a strategy notes is stored with its result
    # the stored metrics are the evaluated (averaged) model's: its last validation and its test
    (model,) = evaluated
    setup, result = resolve_device("cpu", amp=False), results["tp_swa"]
    task = registry.create("task", "classification", {})
    dataset = registry.create("dataset", "shapes", small["options"])
    for split, expected in (("val", result.curve[-1]["val"]), ("test", result.metrics)):
        loader = make_loader(dataset.load("classification", split), task, 8, setup, 0, train=False)
        assert evaluate(model, task, loader, setup, len(dataset.class_names("classification"))) == expected, split

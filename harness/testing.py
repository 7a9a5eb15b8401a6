"""Helpers for testing strategies (ours and third parties'): train a tiny model briefly, see what changed.

    from harness.testing import train_briefly

    def test_my_strategy_trains_only_the_head():
        run = train_briefly(MyStrategy(), "classification")
        assert run.changed == run.names("head")

The model is a small backbone on the offline `shapes` dataset, wrapped by the task; training
goes through the harness's own loop (`harness.training.TrainingLoop`, via the strategy's `fit`), so
the strategy's callbacks are called exactly as in a suite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch

from harness.assembly import Parts, assemble
from harness.components import FitOutcome, Strategy, Task, TaskModel
from harness.devices import setup_for
from harness.registry import Registry, default_registry
from harness.settings import BackboneSettings, CellSpec, DatasetSettings, StrategySettings, TaskSettings, Training
from harness.training import TrainingLoop

#: Faster R-CNN small enough for a test: 32 px images, few proposals
TINY_DETECTION: dict[str, Any] = {
    "min_size": 32,
    "max_size": 32,
    "fpn_channels": 16,
    "representation_size": 32,
    "anchor_sizes": [8, 16, 32, 64],
    "proposals_train": 32,
    "proposals_test": 16,
    "rpn_sampled": 16,
    "roi_sampled": 8,
}
#: the offline dataset of a brief run: 32 px, 8 training images, 4 for validation and test
TINY_DATA: dict[str, Any] = {"image_size": 32, "train": 8, "val": 4, "test": 4}
TASK_OPTIONS: dict[str, dict[str, Any]] = {"classification": {}, "detection": TINY_DETECTION, "segmentation": {}}
KINDS = tuple(TASK_OPTIONS)


@dataclass
class BriefRun:
    """What a short training run did: the model, which parameters and buffers changed, the optimizer."""

    model: TaskModel
    changed: set[str]
    changed_buffers: set[str]
    outcome: FitOutcome
    #: what the strategy recorded with the result (`notes`)
    notes: dict[str, Any]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        assert self.outcome.optimizer is not None
        return self.outcome.optimizer

    def names(self, prefix: str = "") -> set[str]:
        """Parameter names of the (possibly wrapped) model starting with `prefix`."""
        return {n for n, _ in self.model.named_parameters() if n.startswith(prefix)}

    def group_of(self, name: str) -> dict[str, Any]:
        """The optimizer group holding parameter `name`."""
        parameter = self.model.get_parameter(name)
        return next(g for g in self.optimizer.param_groups if any(p is parameter for p in g["params"]))


def brief_spec(kind: str, backbone: str, training: Training, registry: Registry, strategy: str = "full") -> CellSpec:
    """The settings of a tiny cell: `kind` on the offline `shapes` dataset at 32 px, 8 training images."""
    return CellSpec(
        task=TaskSettings(
            kind=kind, dataset=DatasetSettings(name="shapes", options=TINY_DATA), options=TASK_OPTIONS[kind],
            metric=cast("type[Task]", registry.get("task", kind)).metrics[0],
        ),
        backbone=BackboneSettings(name=backbone),
        strategy=StrategySettings(name=strategy),
        training=training,
        seed=0,
    )  # fmt: skip


def tiny_model(kind: str, backbone: str = "resnet18", registry: Registry | None = None, seed: int = 0) -> Any:
    """(task, model, dataset) for `kind`: a randomly initialised backbone wrapped by the task.

    The components come from `registry`, by default this process's: the built-ins and every installed
    plugin (entry points, `BENCH_PLUGINS`), so a plugin's own backbone or dataset is found by name."""
    registry = registry or default_registry()
    spec = brief_spec(kind, backbone, Training(batch_size=4), registry).model_copy(update={"seed": seed})
    parts = Parts.of(spec, registry)
    cell = assemble(spec, parts, setup_for("cpu", spec.training, parts.task), registry=registry)
    return cell.task, cell.model, cell.parts.dataset


def train_briefly(
    strategy: Strategy,
    kind: str = "classification",
    *,
    steps: int = 3,
    backbone: str = "resnet18",
    teacher: TaskModel | None = None,
    registry: Registry | None = None,
    **training: Any,
) -> BriefRun:
    """Prepare `strategy` on a tiny model and train it for `steps` steps on the CPU (SGD, no momentum,
    no weight decay, constant learning rate 0.1, unless `training` says otherwise). `backbone` is any
    installed backbone; `registry` replaces the installed plugins (a test's own)."""
    registry = registry or default_registry()
    settings = Training(
        **{
            "epochs": steps,
            "max_steps": steps,
            "batch_size": 4,
            "optimizer": "sgd",
            "lr": 0.1,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "schedule": "constant",
            "warmup_fraction": 0.0,
            **training,
        }
    )
    spec = brief_spec(kind, backbone, settings, registry, strategy.name or "custom")
    parts = Parts.of(spec, registry, strategy)
    cell = assemble(spec, parts, setup_for("cpu", settings, parts.task), registry=registry, teacher=teacher)
    model = cell.model
    parameters = {n for n, _ in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = TrainingLoop(cell)
    outcome = strategy.fit(loop)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return BriefRun(model, changed & parameters, changed - parameters, outcome, loop.notes)

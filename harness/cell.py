"""Cells: the points of a suite's grid, task x backbone x strategy x seed, fully resolved.

A cell's key is a hash of its resolved settings, so the same experiment is recognised
across runs (resume) and machines, and any change of setting makes a new cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.components import Task
from harness.registry import Registry
from harness.suite import BackboneSpec, PretrainSpec, StrategySpec, Suite, TaskSpec, Training
from harness.weights import file_digest, parse_weights

#: bump when a change makes old results incomparable
SETTINGS_VERSION = 1


def settings_key(settings: dict[str, Any]) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Cell:
    """One experiment: everything needed to run it is in `settings` (plain JSON)."""

    key: str
    task: str
    backbone: str
    strategy: str
    seed: int
    settings: dict[str, Any] = field(compare=False)
    skip_reason: str | None = None
    #: pretraining stage this cell's weights come from, if any
    pretrain: str | None = None

    @property
    def label(self) -> str:
        return f"{self.task} / {self.backbone} / {self.strategy} / seed {self.seed}"


def task_settings(task: Task, dataset: Any, options: dict[str, Any], metric: str | None) -> dict[str, Any]:
    """A task's part of a cell's settings, with the ranking metric resolved (default: the task's first)."""
    return {
        "kind": task.name,
        "dataset": {"name": dataset.name, "options": dict(dataset.options)},
        "options": dict(options),
        "metric": metric or task.metrics[0],
    }


def pretrain_cell(spec: PretrainSpec, suite: Suite, registry: Registry) -> Cell:
    """A pretraining stage as a cell: full training of a randomly initialised backbone."""
    training = suite.training.override(spec.training)
    settings = {
        "version": SETTINGS_VERSION,
        "task": task_settings(registry.create("task", spec.kind, spec.options), spec.dataset, spec.options, None),
        "backbone": {"name": spec.backbone, "weights": "none"},
        "strategy": {"name": "full", "options": {}},
        "training": training.model_dump(),
        "seed": spec.seed,
    }
    return Cell(settings_key(settings), f"pretrain:{spec.name}", spec.backbone, "full", spec.seed, settings)


def plan_cells(suite: Suite, registry: Registry) -> list[Cell]:
    """Every cell of the suite in run order, with skip reasons for those that cannot run."""
    pretrain_keys = {p.name: pretrain_cell(p, suite, registry).key for p in suite.pretrain}
    cells = []
    for task in suite.tasks:
        for backbone in suite.backbones:
            for strategy in suite.strategies:
                if _excluded(suite, task, backbone, strategy):
                    continue
                for seed in suite.seeds:
                    cells.append(_cell(suite, registry, task, backbone, strategy, seed, pretrain_keys))
    return cells


def _cell(
    suite: Suite,
    registry: Registry,
    task: TaskSpec,
    backbone: BackboneSpec,
    strategy: StrategySpec,
    seed: int,
    pretrain_keys: dict[str, str],
) -> Cell:
    strategy_obj = registry.create("strategy", strategy.name, strategy.options)
    backbone_obj = registry.create("backbone", backbone.name)
    task_obj = registry.create("task", task.kind, task.options)
    weights, pretrain = _resolve_weights(backbone.weights, strategy_obj.from_scratch, pretrain_keys)
    training: Training = suite.training_for(task, strategy)
    settings = {
        "version": SETTINGS_VERSION,
        "task": task_settings(task_obj, task.dataset, task.options, task.metric),
        "backbone": {"name": backbone.name, "weights": weights},
        "strategy": {"name": strategy.name, "options": dict(strategy.options)},
        "training": training.model_dump(),
        "seed": seed,
    }
    reason = task_obj.check(backbone_obj) or strategy_obj.check(task.kind)
    if reason is None and training.batch_size < task_obj.min_train_batch():
        reason = f"{task.kind} needs training.batch_size >= {task_obj.min_train_batch()}"
    return Cell(settings_key(settings), task.name, backbone.id, strategy.id, seed, settings, reason, pretrain)


def _resolve_weights(text: str, from_scratch: bool, pretrain_keys: dict[str, str]) -> tuple[str, str | None]:
    """The weights identity that goes into the cell key, and the pretraining stage it needs."""
    source = parse_weights(text)
    if from_scratch or source.kind == "none":
        return "none", None
    if source.kind == "pretrain":
        return f"pretrain:{source.value}@{pretrain_keys[source.value]}", source.value
    path = Path(source.value).expanduser()  # relative paths: to the working directory, like `output`
    digest = file_digest(path) if path.is_file() else "missing"
    return f"file:{path}#{digest}", None


def _excluded(suite: Suite, task: TaskSpec, backbone: BackboneSpec, strategy: StrategySpec) -> bool:
    for ex in suite.exclude:
        if (
            (ex.task is None or ex.task == task.name)
            and (ex.backbone is None or ex.backbone == backbone.id)
            and (ex.strategy is None or ex.strategy == strategy.id)
        ):
            return True
    return False

"""Putting a cell together: from its `CellSpec` to the objects that train it, in one place.

The runner, the estimate's calibration and the test helpers all assemble a cell here: the
components by name, the dataset's splits as loaders, the backbone with its weights, the task's
model around it, the teacher a distillation cell learns from and the other cells' models a strategy
asked for (`Strategy.inputs`), the strategy's context and its
parameter groups. What differs between them is only where the data comes from (the dataset's
splits, or a task's synthetic samples) and where weights and teachers are read (the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from harness.callbacks import call
from harness.components import (
    Backbone,
    BackboneModule,
    CellInput,
    Dataset,
    ParamGroup,
    Strategy,
    Task,
    TaskModel,
    TrainingContext,
)
from harness.devices import DeviceSetup
from harness.errors import BenchError
from harness.loaders import SampleList, make_loader, seed_everything
from harness.registry import Registry
from harness.settings import BackboneSettings, CellSpec, StrategySettings, TeacherSettings, step_budget
from harness.store import Store, checkpoint_problem
from harness.weights import (
    fetch_named,
    first_mismatch,
    identity_path,
    load_into,
    parse_weights,
    read_checkpoint,
    resolve_named,
)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Parts:
    """A cell's components, created from its spec by name (the strategy may be given instead)."""

    task: Task
    dataset: Dataset
    backbone: Backbone
    strategy: Strategy

    @classmethod
    def of(cls, spec: CellSpec, registry: Registry, strategy: Strategy | None = None) -> Parts:
        task_spec, data = spec.task, spec.task.dataset
        return cls(
            task=registry.create("task", task_spec.kind, task_spec.options),
            dataset=registry.create("dataset", data.name, data.options),
            backbone=registry.create("backbone", spec.backbone.name, spec.backbone.options),
            strategy=strategy or registry.create("strategy", spec.strategy.name, spec.strategy.options),
        )

    def provenance(self, registry: Registry, spec: CellSpec) -> dict[str, Any]:
        """Which release of which package provided each component: a new release may change what a cell does."""
        names = {
            "task": spec.task.kind,
            "dataset": spec.task.dataset.name,
            "backbone": spec.backbone.name,
            "strategy": spec.strategy.name,
        }
        return {kind: registry.components[kind][name].identity() for kind, name in names.items()}


@dataclass
class AssembledCell:
    """Everything a cell trains with, ready for `harness.TrainingLoop`."""

    spec: CellSpec
    parts: Parts
    setup: DeviceSetup
    model: TaskModel
    num_classes: int
    loaders: dict[str, DataLoader]
    context: TrainingContext
    groups: list[ParamGroup]
    #: what the strategy and the loop record with the result (`notes`), e.g. {"feature_cache": "used"}
    notes: dict[str, Any]
    #: ids of the parameters that train from the start (`requires_grad` after `prepare`)
    trained_at_start: set[int] = field(default_factory=set)

    @property
    def task(self) -> Task:
        return self.parts.task

    @property
    def strategy(self) -> Strategy:
        return self.parts.strategy

    def first_batch(self) -> Any:
        """A batch of the first training samples, read directly (the loader's shuffling is untouched)."""
        train_set = self.loaders["train"].dataset
        count = min(self.spec.training.batch_size, len(train_set))  # type: ignore[arg-type]
        return self.task.collate([train_set[i] for i in range(count)])


def assemble(
    spec: CellSpec,
    parts: Parts,
    setup: DeviceSetup,
    *,
    registry: Registry,
    store: Store | None = None,
    teacher: TaskModel | None = None,
    samples: list[Any] | None = None,
    num_classes: int | None = None,
) -> AssembledCell:
    """The cell of `spec`, from its `parts` (created by the caller, which needs the task for `setup`),
    on `setup`, seeded with its seed before anything random is drawn.

    Weights other than `none`, and teachers, are read through `store`; `teacher` gives one instead.
    With `samples`, every split is those samples (a task's synthetic ones: the calibration) and the
    dataset is not read. `num_classes` is the class count when the caller knows it already.
    """
    task, dataset = parts.task, parts.dataset
    seed_everything(spec.seed)
    if num_classes is None:
        num_classes = len(dataset.class_names(task.name))
    module = parts.backbone.build(output_stride=task.output_stride())
    load_weights(parts.backbone, module, spec.backbone.weights, store)
    model = task.build_model(module, num_classes).to(setup.device)
    loaders = _loaders(spec, parts, setup, samples)
    if len(loaders["train"]) == 0:
        raise BenchError("the training split is empty")
    total_steps, epochs = step_budget(spec.training, len(loaders["train"]))
    if teacher is None:
        teacher = load_teacher(spec, registry, task, num_classes, store, setup.device)
    context = TrainingContext(
        task,
        setup.device,
        len(loaders["train"]),
        total_steps,
        teacher,
        epochs=epochs,
        train_loader=loaders["train"],
        num_classes=num_classes,
        autocast=setup.autocast,
        dataset=dataset,
        inputs=cell_inputs(spec, registry, task, num_classes, store, setup.device),
    )
    parts.strategy.context = context
    notes: dict[str, Any] = {}
    groups = [_group(g) for g in call(parts.strategy.prepare, model, context=context, notes=notes)]
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    return AssembledCell(spec, parts, setup, model, num_classes, loaders, context, groups, notes, trained)


def _group(group: Any) -> ParamGroup:
    """A strategy's group; a plain dict (the form before `ParamGroup` was a dataclass) is read into one."""
    if isinstance(group, ParamGroup):
        return group
    if isinstance(group, dict):
        return ParamGroup(**{"params": list(group["params"]), **{k: v for k, v in group.items() if k != "params"}})
    raise BenchError(f"prepare() returned a {type(group).__name__} among its groups, not a ParamGroup")


def _loaders(spec: CellSpec, parts: Parts, setup: DeviceSetup, samples: list[Any] | None) -> dict[str, DataLoader]:
    training, task = spec.training, parts.task
    eval_batch = training.eval_batch_size or training.batch_size
    workers = training.num_workers if samples is None else 0
    loaders = {}
    for split in SPLITS:
        data = parts.dataset.load(task.name, split) if samples is None else SampleList(samples)
        train = split == "train"
        size = training.batch_size if train else eval_batch
        loaders[split] = make_loader(data, task, size, setup, workers, train=train, seed=spec.seed)
    return loaders


def load_weights(plugin: Backbone, module: BackboneModule, weights: str, store: Store | None) -> None:
    """Load a cell's backbone weights by their identity: a pretraining stage's checkpoint, named weights, a file."""
    if weights == "none":
        return
    if weights.startswith("pretrain:"):
        if store is None:
            raise BenchError("weights from a pretraining stage need the results directory")
        path = store.checkpoint_path(weights.rsplit("@", 1)[1])
        problem = checkpoint_problem(path) if path.is_file() else None
        if problem is not None:
            raise BenchError(f"the pretraining checkpoint cannot be used: {problem}")
    elif weights.startswith("named:"):
        path = fetch_named(resolve_named(plugin, parse_weights(weights).value))
    else:
        path = identity_path(weights)
    load_into(plugin, module, read_checkpoint(path), str(path))


def load_teacher(
    spec: CellSpec, registry: Registry, task: Task, num_classes: int, store: Store | None, device: torch.device
) -> TaskModel | None:
    """The trained model a distillation cell learns from: another cell's saved model, or a checkpoint's."""
    if spec.teacher is not None:
        path = _saved_model("teacher", spec.teacher.key, store)
        return trained_model(spec.teacher.backbone, spec.teacher.strategy, path, registry, task, num_classes, device)
    if (checkpoint := spec.strategy.teacher_checkpoint) is not None:
        ref = registry.create("strategy", spec.strategy.name, spec.strategy.options).teacher()
        backbone = BackboneSettings(name=ref.backbone)
        return trained_model(backbone, None, identity_path(checkpoint), registry, task, num_classes, device)
    return None


def cell_inputs(
    spec: CellSpec, registry: Registry, task: Task, num_classes: int, store: Store | None, device: torch.device
) -> tuple[CellInput, ...]:
    """The cells `Strategy.inputs` named, each loaded from its saved model when the strategy asks."""
    found = []
    for cell in spec.inputs:
        path = _saved_model("input", cell.key, store)

        def load(cell: TeacherSettings = cell, path: Path = path) -> TaskModel:
            return trained_model(cell.backbone, cell.strategy, path, registry, task, num_classes, device)

        found.append(CellInput(cell.key, cell.strategy.name, cell.strategy.options, cell.seed or 0, load))
    return tuple(found)


def trained_model(
    backbone: BackboneSettings,
    wrapping: StrategySettings | None,
    path: Path,
    registry: Registry,
    task: Task,
    num_classes: int,
    device: torch.device,
) -> TaskModel:
    """A saved task model, rebuilt: `backbone` under the task, wrapped as `wrapping` wraps it (LoRA), its
    weights from `path`; frozen, in eval mode, on `device`."""
    module = registry.create("backbone", backbone.name, backbone.options).build(task.output_stride())
    model = task.build_model(module, num_classes)
    if wrapping is not None:  # the cell's strategy may have wrapped modules (LoRA): wrap the same way
        wrapper = registry.create("strategy", wrapping.name, wrapping.options)
        call(wrapper.prepare, model, context=TrainingContext(task, device, 0, 0, num_classes=num_classes))
    try:
        model.load_state_dict(read_checkpoint(path))
    except RuntimeError as exc:
        raise BenchError(f"{path} is not a {backbone.name} {task.name} model: {first_mismatch(exc)}") from None
    model.requires_grad_(False)
    return model.to(device).eval()


def _saved_model(role: str, key: str, store: Store | None) -> Path:
    if store is None:
        raise BenchError(f"the {role} cell {key} is read from the results directory, and none was given")
    path = store.model_path(key)
    if not path.is_file():
        raise BenchError(f"the {role} cell {key} has no saved model ({path})")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise BenchError(f"the {role} cell {key}'s saved model cannot be used: {problem}")
    return path

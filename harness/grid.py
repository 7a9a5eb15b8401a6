"""Planning a suite: its grid of cells, each with its settings resolved once into a `CellSpec`.

Every option of every component is resolved with its default (so a plugin release that changes a
default makes new cells), sweeps are expanded, teachers linked to their students, and two entries
that would make the same experiment are refused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.callbacks import call
from harness.cell import Cell
from harness.components import Backbone, CellRef, Task
from harness.errors import SuiteError
from harness.registry import Registry
from harness.settings import (
    BackboneSettings,
    BackboneSpec,
    CellSpec,
    DatasetRef,
    DatasetSettings,
    PretrainSpec,
    StrategySettings,
    StrategySpec,
    Suite,
    TaskSettings,
    TaskSpec,
    TeacherSettings,
    Training,
)
from harness.sweeps import option_axes
from harness.weights import file_identity, parse_weights, resolve_named

#: the planned cells by (task, backbone, strategy label, seed): a strategy's sweep makes several
Grid = dict[tuple[str, str, str, int], list[Cell]]


@dataclass(frozen=True)
class Variant:
    """One point of a strategy's sweep: its training settings and options."""

    setting: str
    training: Training
    options: dict[str, Any]


def variants(suite: Suite, task: TaskSpec, strategy: StrategySpec, registry: Registry) -> list[Variant]:
    """Every combination of the swept training settings and strategy options (one without sweeps)."""
    base = suite.training_for(task, strategy)
    training_axes = suite.training_axes(task, strategy)
    declared = registry.get("strategy", strategy.name).Options
    fixed, options_axes = option_axes(declared, strategy.options)
    axes = [("training", k, v) for k, v in training_axes.items()] + [("options", k, v) for k, v in options_axes.items()]
    found = []
    for values in itertools.product(*(choices for _, _, choices in axes)):
        chosen = {(where, key): value for (where, key, _), value in zip(axes, values, strict=True)}
        training = base.model_copy(update={k: v for (w, k), v in chosen.items() if w == "training"})
        options = as_declared(declared, {**fixed, **{k: v for (w, k), v in chosen.items() if w == "options"}})
        setting = ", ".join(
            f"{key}={options[key] if where == 'options' else value}" for (where, key), value in chosen.items()
        )
        found.append(Variant(setting, training, options))
    return found


def task_settings(
    task: Task, dataset: DatasetRef, options: dict[str, Any], metric: str | None, registry: Registry | None = None
) -> TaskSettings:
    """A task's part of a cell's settings: every option with its default resolved, the ranking metric too
    (default: the task's first), so a plugin release that changes a default makes new cells."""
    dataset_options = dict(dataset.options)
    if registry is not None and dataset.name in registry.components["dataset"]:
        dataset_options = resolved(registry.get("dataset", dataset.name).Options, dataset_options)
    return TaskSettings(
        kind=task.name,
        dataset=DatasetSettings(name=dataset.name, options=dataset_options),
        options=resolved(type(task).Options, options),
        metric=metric or task.metrics[0],
    )


def resolved(options: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """Every option of a component, given or defaulted, as JSON (an integer given for a float option
    is a float: `dropout = 0` and `dropout = 0.0` are one setting and make one cell key), except
    options marked `OMITTED_AT_DEFAULT` that are at their default."""
    try:
        model = options.model_validate(values)
    except ValidationError:
        return dict(values)
    dumped = model.model_dump(mode="json")
    for name, info in options.model_fields.items():
        extra = info.json_schema_extra
        omitted = isinstance(extra, dict) and bool(extra.get("omitted_at_default"))
        if omitted and getattr(model, name) == info.get_default(call_default_factory=True):
            dumped.pop(name, None)
    return dumped


def as_declared(options: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with each integer given for a float option written as a float (the sweep labels)."""
    if not values:
        return dict(values)
    try:
        dumped = options.model_validate(values).model_dump(mode="json", include=set(values))
    except ValidationError:
        return dict(values)
    return {key: _floats(value, dumped.get(key, value)) for key, value in values.items()}


def _floats(raw: Any, declared: Any) -> Any:
    if isinstance(raw, int) and not isinstance(raw, bool) and isinstance(declared, float):
        return float(raw)
    if isinstance(raw, list) and isinstance(declared, list) and len(raw) == len(declared):
        return [_floats(r, d) for r, d in zip(raw, declared, strict=True)]
    if isinstance(raw, dict) and isinstance(declared, dict):
        return {k: _floats(v, declared.get(k, v)) for k, v in raw.items()}
    return raw


def pretrain_cell(spec: PretrainSpec, suite: Suite, registry: Registry) -> Cell:
    """A pretraining stage as a cell: full training of a randomly initialised backbone."""
    settings = CellSpec(
        task=task_settings(
            registry.create("task", spec.kind, spec.options), spec.dataset, spec.options, None, registry
        ),
        backbone=BackboneSettings(name=spec.backbone),
        strategy=StrategySettings(name="full", options=resolved(registry.get("strategy", "full").Options, {})),
        training=suite.training.override(spec.training),
        seed=spec.seed,
    )
    return Cell(settings.key, f"pretrain:{spec.name}", spec.backbone, "full", spec.seed, settings)


def plan_cells(suite: Suite, registry: Registry) -> list[Cell]:
    """Every cell of the suite in run order (teachers before their students), with skip reasons."""
    pretrain_keys = {p.name: pretrain_cell(p, suite, registry).key for p in suite.pretrain}
    cells: Grid = {}
    for task in suite.tasks:
        for backbone in suite.backbones:
            for strategy in suite.strategies:
                if excluded(suite, task, backbone, strategy) or suite.search_for(strategy) is not None:
                    continue  # a searched strategy's cells are made as its search runs (`harness.search`)
                for seed in suite.seeds:
                    cells[task.name, backbone.id, strategy.id, seed] = [
                        plan_cell(suite, registry, task, backbone, strategy, variant, seed, pretrain_keys)
                        for variant in variants(suite, task, strategy, registry)
                    ]
    planned = _refuse_duplicates(suite, _linked(suite, registry, cells))
    if not planned and not any(suite.search_for(s) is not None for s in suite.strategies):
        raise SuiteError(f"{suite.source}: exclude: the exclusions leave no cell; exclude less")
    return planned


def _refuse_duplicates(suite: Suite, cells: list[Cell]) -> list[Cell]:
    """Two cells with one key would train twice into one result under two labels: a suite mistake.

    It happens when two entries (tasks, backbones, strategies) have identical settings, or the
    same once resolved (a strategy that trains from scratch ignores `weights`), or when a sweep
    repeats a value.
    """
    seen: dict[str, Cell] = {}
    for cell in cells:
        first = seen.setdefault(cell.key, cell)
        if first is not cell:
            raise SuiteError(f"{suite.source}: {_same_cell(suite, first, cell)}")
    return cells


def _same_cell(suite: Suite, first: Cell, second: Cell) -> str:
    for table, key, attribute, labels in (
        ("tasks", "name", "task", [t.name for t in suite.tasks]),
        ("backbones", "label", "backbone", [b.id for b in suite.backbones]),
        ("strategies", "label", "strategy", [s.id for s in suite.strategies]),
    ):
        a, b = getattr(first, attribute), getattr(second, attribute)
        if a != b:
            i, j = labels.index(a), labels.index(b)
            return (
                f"{table}[{j}].{key}: {b!r} makes the same cells as {table}[{i}] ({a!r}), e.g. "
                f"{second.label} = {first.label}; entries with identical settings are one experiment: "
                f"remove one, make them differ, or leave the pair out with [[exclude]]"
            )
    where = f"task {first.task!r}, backbone {first.backbone!r}, seed {first.seed}"
    index = [s.id for s in suite.strategies].index(second.strategy)
    return (
        f"strategies[{index}]: the sweep settings {first.setting!r} and {second.setting!r} make the same cell "
        f"({where}); give a sweep distinct values"
    )


def _linked(suite: Suite, registry: Registry, grid: Grid) -> list[Cell]:
    """Link each distillation cell to its teacher cell (same task and seed), and each cell to the cells
    its strategy's `inputs` names; order the cells others need first."""
    strategies = {s.id: s for s in suite.strategies}
    teacher_keys: set[str] = set()
    for (task, backbone, strategy, seed), cells in grid.items():
        ref = registry.create("strategy", strategies[strategy].name, cells[0].settings.strategy.options).teacher()
        if ref is None or ref.checkpoint is not None:
            continue
        teachers = grid.get((task, ref.backbone, ref.strategy, seed), [])
        if len(teachers) != 1:
            why = "is excluded" if not teachers else f"has {len(teachers)} settings (a teacher needs one)"
            reason = f"teacher {ref.backbone} / {ref.strategy} {why}"
            grid[task, backbone, strategy, seed] = [replace(c, skip_reason=c.skip_reason or reason) for c in cells]
            continue
        grid[task, backbone, strategy, seed] = [_learning_from(cell, teachers[0]) for cell in cells]
        teacher_keys.add(teachers[0].key)
    needed = _with_inputs(suite, registry, grid) | teacher_keys
    ordered = [replace(c, keep_model=c.key in needed) for cells in grid.values() for c in cells]
    return sorted(ordered, key=lambda c: (bool(c.inputs), c.teacher is not None))


def _learning_from(cell: Cell, teacher: Cell) -> Cell:
    """`cell` with its teacher's identity in its settings (and so in its key)."""
    identity = TeacherSettings(key=teacher.key, backbone=teacher.settings.backbone, strategy=teacher.settings.strategy)
    settings = cell.settings.model_copy(update={"teacher": identity})
    reason = cell.skip_reason
    if reason is None and teacher.skip_reason:
        reason = f"teacher cell is skipped: {teacher.skip_reason}"
    return replace(cell, key=settings.key, settings=settings, teacher=teacher.key, skip_reason=reason)


def _with_inputs(suite: Suite, registry: Registry, grid: Grid) -> set[str]:
    """Link each cell whose strategy names `inputs` to those cells (resolved with its own backbone and
    seed where a reference leaves them out); the keys of the cells linked to."""
    strategies = {s.id: s for s in suite.strategies}
    before = dict(grid)  # references resolve to cells as they are before any input is linked
    needed: set[str] = set()
    for (task, backbone, strategy, seed), cells in grid.items():
        linked = []
        for cell in cells:
            plugin = registry.create("strategy", strategies[strategy].name, cell.settings.strategy.options)
            refs = call(plugin.inputs, seeds=list(suite.seeds), seed=seed)
            if not refs:
                linked.append(cell)
                continue
            found, reason = _resolve_inputs(refs, before, task, backbone, seed)
            if reason is None and any(c.key == cell.key for c in found):
                raise SuiteError(f"{suite.source}: strategies: {strategy!r} names itself among its inputs")
            linked.append(_using(cell, found, reason))
            needed.update(c.key for c in found)
        grid[task, backbone, strategy, seed] = linked
    return needed


def _resolve_inputs(
    refs: list[CellRef], grid: Grid, task: str, backbone: str, seed: int
) -> tuple[list[Cell], str | None]:
    """The cells `refs` name (every setting of a swept label), or why they cannot be used."""
    found: list[Cell] = []
    for ref in refs:
        where = (task, ref.backbone or backbone, ref.strategy, seed if ref.seed is None else ref.seed)
        cells = grid.get(where, [])
        name = f"input {where[1]} / {where[2]} / seed {where[3]}"
        if not cells:
            return found, f"{name} is not in the suite (excluded, or not one of its seeds or labels)"
        for cell in cells:
            if cell.skip_reason:
                return found, f"{name} is skipped: {cell.skip_reason}"
            if cell.inputs:
                return found, f"{name} uses inputs itself"
        found += cells
    return found, None


def _using(cell: Cell, inputs: list[Cell], reason: str | None) -> Cell:
    """`cell` with the identities of its inputs in its settings (and so in its key), or skipped with `reason`."""
    if reason is not None:
        return replace(cell, skip_reason=cell.skip_reason or reason)
    identities = [
        TeacherSettings(key=c.key, backbone=c.settings.backbone, strategy=c.settings.strategy, seed=c.seed)
        for c in inputs
    ]
    settings = cell.settings.model_copy(update={"inputs": identities})
    return replace(cell, key=settings.key, settings=settings, inputs=tuple(c.key for c in inputs))


def plan_cell(
    suite: Suite,
    registry: Registry,
    task: TaskSpec,
    backbone: BackboneSpec,
    strategy: StrategySpec,
    variant: Variant,
    seed: int,
    pretrain_keys: dict[str, str],
) -> Cell:
    strategy_obj = registry.create("strategy", strategy.name, variant.options)
    backbone_obj = registry.create("backbone", backbone.name, backbone.options)
    task_obj = registry.create("task", task.kind, task.options)
    weights, pretrain = _resolve_weights(backbone.weights, strategy_obj.from_scratch, pretrain_keys, backbone_obj)
    training = variant.training
    ref = strategy_obj.teacher()
    settings = CellSpec(
        task=task_settings(task_obj, task.dataset, task.options, task.metric, registry),
        backbone=BackboneSettings(
            name=backbone.name, weights=weights, options=resolved(type(backbone_obj).Options, backbone.options)
        ),
        strategy=StrategySettings(
            name=strategy.name,
            options=resolved(type(strategy_obj).Options, variant.options),
            batchnorm=strategy_obj.batchnorm_policy(),
            teacher_checkpoint=file_identity(ref.checkpoint)
            if ref is not None and ref.checkpoint is not None
            else None,
        ),
        training=training,
        seed=seed,
    )
    reason = task_obj.check(backbone_obj) or call(strategy_obj.check, task.kind, backbone=backbone_obj, task=task_obj)
    if reason is None and training.batch_size < task_obj.min_train_batch():
        reason = f"{task.kind} needs training.batch_size >= {task_obj.min_train_batch()}"
    return Cell(settings.key, task.name, backbone.id, strategy.id, seed, settings, reason, pretrain, variant.setting)


def _resolve_weights(
    text: str, from_scratch: bool, pretrain_keys: dict[str, str], backbone: Backbone
) -> tuple[str, str | None]:
    """The weights identity that goes into the cell key, and the pretraining stage it needs."""
    source = parse_weights(text)
    if from_scratch or source.kind == "none":
        return "none", None
    if source.kind == "pretrain":
        return f"pretrain:{source.value}@{pretrain_keys[source.value]}", source.value
    if source.kind == "named":  # DEFAULT resolves to the weights it stands for today
        named = resolve_named(backbone, source.value)
        return f"named:{named.name}@{named.filename}", None
    return file_identity(source.value), None


def excluded(suite: Suite, task: TaskSpec, backbone: BackboneSpec, strategy: StrategySpec) -> bool:
    for ex in suite.exclude:
        if (
            (ex.task is None or ex.task == task.name)
            and (ex.backbone is None or ex.backbone == backbone.id)
            and (ex.strategy is None or ex.strategy == strategy.id)
        ):
            return True
    return False

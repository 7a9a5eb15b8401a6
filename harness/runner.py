"""Running cells and suites: build, train, evaluate, measure, record; one failure never stops a suite."""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from harness.callbacks import call
from harness.cell import Cell, plan_cells
from harness.components import Backbone, BackboneModule, Executor, Strategy, Task, TaskModel, TrainingContext
from harness.cost import PeakMemory, count_parameters, flops_per_sample
from harness.devices import (
    DeviceSetup,
    execution_settings,
    load_average,
    resolve_device,
    set_threads,
    setup_for,
    usable_cores,
)
from harness.errors import BenchError, Diverged, Unsupported
from harness.job import Job, JobOutcome, plan_jobs
from harness.progress import HookRelay, Observer
from harness.provenance import provenance
from harness.registry import Registry, default_registry
from harness.result import CellResult
from harness.scheduler import Scheduler
from harness.selection import CellFilter, select_cells
from harness.store import Store, WriteFailed, checkpoint_problem, manifest_runs, write_checkpoint
from harness.suite import Suite, Training
from harness.training import TrainingLoop, make_loader, seed_everything, step_budget
from harness.weights import (
    fetch_named,
    first_mismatch,
    identity_path,
    load_into,
    parse_weights,
    read_checkpoint,
    resolve_named,
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def run_cell(
    cell: Cell,
    registry: Registry,
    device: str,
    store: Store,
    observer: Observer | None = None,
    on_trained: Callable[[TaskModel], None] | None = None,
    threads: int | None = None,
) -> CellResult:
    """Run one cell and describe the outcome; never raises for a problem inside the cell.

    `threads` caps the CPU threads (an executor sharing the cores out between workers).
    """
    observer = observer or Observer()
    result = CellResult.for_cell(cell, "failed", started_at=_now())
    started = time.perf_counter()
    result.cost.load_start, result.cost.cores = load_average(), usable_cores()
    observer.cell_started(cell, Training(**cell.settings["training"]).epochs)
    try:
        if cell.skip_reason:
            raise Unsupported(cell.skip_reason)
        _train(cell, registry, device, store, observer, result, on_trained, threads)
        result.status = "ok"
    except Unsupported as exc:
        result.status, result.reason = "skipped", str(exc)
    except Diverged as exc:
        result.status, result.reason = "diverged", str(exc)
    except WriteFailed:
        raise  # the store's problem, not the cell's: the suite stops (harness.job.run_job)
    except Exception as exc:
        result.status, result.reason = "failed", f"{type(exc).__name__}: {exc}"
        result.traceback = traceback.format_exc()
    result.cost.wall_seconds = time.perf_counter() - started
    result.cost.load_end = load_average()
    result.finished_at = _now()
    return result


def _train(
    cell: Cell,
    registry: Registry,
    device: str,
    store: Store,
    observer: Observer,
    result: CellResult,
    on_trained: Callable[[TaskModel], None] | None,
    threads: int | None,
) -> None:
    settings = cell.settings
    training = Training(**settings["training"])
    caps = [t for t in (training.threads, threads) if t]
    set_threads(min(caps) if caps else None)
    task = registry.create("task", settings["task"]["kind"], settings["task"]["options"])
    setup = setup_for(device, training, task)
    seed_everything(cell.seed)
    result.provenance = provenance(setup.name, cell.seed)
    nondeterministic: list[str] = []
    result.provenance["execution"] = {**setup.describe(), "nondeterministic_ops": nondeterministic}
    memory = PeakMemory(setup)  # the cell's own peak: from before its model is built to after its test
    with execution_settings(setup, nondeterministic), memory:
        _train_on(cell, registry, task, setup, store, observer, result, on_trained, training)
    result.cost.peak_memory_bytes, result.cost.peak_memory_kind = memory.stop()


def _train_on(
    cell: Cell,
    registry: Registry,
    task: Task,
    setup: DeviceSetup,
    store: Store,
    observer: Observer,
    result: CellResult,
    on_trained: Callable[[TaskModel], None] | None,
    training: Training,
) -> None:
    settings = cell.settings
    kind = settings["task"]["kind"]
    metric = settings["task"]["metric"]
    data_spec = settings["task"]["dataset"]
    dataset = registry.create("dataset", data_spec["name"], data_spec["options"])
    classes = dataset.class_names(kind)
    backbone_plugin = registry.create("backbone", settings["backbone"]["name"], settings["backbone"].get("options"))

    backbone = backbone_plugin.build(output_stride=task.output_stride())
    _load_weights(backbone_plugin, backbone, settings["backbone"]["weights"], store)
    model = task.build_model(backbone, len(classes)).to(setup.device)
    strategy = registry.create("strategy", settings["strategy"]["name"], settings["strategy"]["options"])
    # which release of which package provided each component: a new release may change what a cell does
    result.provenance["plugins"] = {
        kind: registry.components[kind][name].identity()
        for kind, name in (
            ("task", kind),
            ("dataset", data_spec["name"]),
            ("backbone", settings["backbone"]["name"]),
            ("strategy", settings["strategy"]["name"]),
        )
    }

    workers = training.num_workers
    train_loader = make_loader(
        dataset.load(kind, "train"), task, training.batch_size, setup, workers, train=True, seed=cell.seed
    )
    # what loading changed in the training annotations (e.g. boxes clamped or dropped), from the annotations alone
    result.data = dataset.data_report(kind, "train")
    eval_batch = training.eval_batch_size or training.batch_size
    val_loader = make_loader(dataset.load(kind, "val"), task, eval_batch, setup, workers, train=False)
    test_loader = make_loader(dataset.load(kind, "test"), task, eval_batch, setup, workers, train=False)
    if len(train_loader) == 0:
        raise BenchError("the training split is empty")

    total_steps, epochs = step_budget(training, len(train_loader))
    teacher = _teacher(cell, registry, task, len(classes), store, setup.device)
    context = TrainingContext(
        task,
        setup.device,
        len(train_loader),
        total_steps,
        teacher,
        epochs=epochs,
        train_loader=train_loader,
        num_classes=len(classes),
        autocast=setup.autocast,
        dataset=dataset,
    )
    strategy.context = context
    groups = call(strategy.prepare, model, context=context)
    trained = {id(p) for p in model.parameters() if p.requires_grad}

    cost = result.cost
    cost.total_params = count_parameters(model)[1]
    cost.device, cost.device_name = str(setup.device), setup.name
    train_set = train_loader.dataset
    first = task.collate([train_set[i] for i in range(min(training.batch_size, len(train_set)))])  # type: ignore[arg-type]
    cost.flops_per_sample = _count_flops(model, task, strategy, first, setup, context)

    loaders = {"train": train_loader, "val": val_loader, "test": test_loader}
    loop = TrainingLoop(
        model, task, strategy, groups, loaders, training, setup, metric, len(classes), observer, context
    )
    outcome = strategy.fit(loop)
    if outcome.model is None:
        raise BenchError(f"strategy {strategy.name!r}: fit() must return loop.run()'s outcome")
    cost.eval_seconds = outcome.eval_seconds
    cost.train_seconds, cost.data_wait_seconds = outcome.train_seconds, outcome.data_wait_seconds
    cost.compile_seconds, cost.warmup_steps = outcome.compile_seconds, outcome.warmup_steps
    cost.train_samples, cost.train_steps = outcome.samples, outcome.steps
    cost.samples_per_second = outcome.samples_per_second
    result.metrics, result.curve, result.best = outcome.metrics, outcome.curve, outcome.best
    result.per_image = outcome.per_image
    # what predicting without looking scores on the same test split, with the same metric code
    result.trivial, result.trivial_predictor = task.trivial(iter(test_loader), len(classes)), task.trivial_predictor
    result.notes = dict(context.notes)
    # parameters unfrozen during training (gradual unfreezing) count as trainable too
    trained |= {id(p) for p in model.parameters() if p.requires_grad}
    cost.trainable_params = sum(p.numel() for p in model.parameters() if id(p) in trained)
    evaluated = outcome.model
    if cell.keep_model:
        save_state(evaluated, store.model_path(cell.key))
    if on_trained is not None:
        on_trained(evaluated)


def _teacher(
    cell: Cell, registry: Registry, task: Task, num_classes: int, store: Store, device: torch.device
) -> TaskModel | None:
    """The trained model a distillation cell learns from: another cell's, or a checkpoint's."""
    wrapping = None
    if cell.teacher is not None:
        spec = cell.settings["teacher"]["backbone"]
        wrapping = cell.settings["teacher"]["strategy"]
        path = store.model_path(cell.teacher)
        if not path.is_file():
            raise BenchError(f"the teacher cell {cell.teacher} has no saved model ({path})")
        problem = checkpoint_problem(path)
        if problem is not None:
            raise BenchError(f"the teacher cell {cell.teacher}'s saved model cannot be used: {problem}")
    elif "teacher_checkpoint" in cell.settings["strategy"]:
        own = cell.settings["strategy"]
        ref = registry.create("strategy", own["name"], own["options"]).teacher()  # its options, by its own names
        spec = {"name": ref.backbone}
        path = identity_path(cell.settings["strategy"]["teacher_checkpoint"])
    else:
        return None
    teacher = task.build_model(
        registry.create("backbone", spec["name"], spec.get("options")).build(task.output_stride()), num_classes
    )
    if wrapping is not None:  # the teacher's strategy may have wrapped modules (LoRA): wrap the same way
        wrapper = registry.create("strategy", wrapping["name"], wrapping["options"])
        call(wrapper.prepare, teacher, context=TrainingContext(task, device, 0, 0, num_classes=num_classes))
    try:
        teacher.load_state_dict(read_checkpoint(path))
    except RuntimeError as exc:
        raise BenchError(f"{path} is not a {spec['name']} {task.name} model: {first_mismatch(exc)}") from None
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def save_state(model: torch.nn.Module, path: Path) -> None:
    """A module's weights, on the CPU, written atomically, with their sha256 in `<path>.sha256`."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    write_checkpoint(path, buffer.getvalue())


def _load_weights(plugin: Backbone, module: BackboneModule, weights: str, store: Store) -> None:
    if weights == "none":
        return
    if weights.startswith("pretrain:"):
        path = store.checkpoint_path(weights.rsplit("@", 1)[1])
        problem = checkpoint_problem(path) if path.is_file() else None
        if problem is not None:
            raise BenchError(f"the pretraining checkpoint cannot be used: {problem}")
    elif weights.startswith("named:"):
        path = fetch_named(resolve_named(plugin, parse_weights(weights).value))
    else:
        path = identity_path(weights)
    load_into(plugin, module, read_checkpoint(path), str(path))


def _count_flops(
    model: TaskModel,
    task: Task,
    strategy: Strategy,
    batch: Any,
    setup: DeviceSetup,
    context: TrainingContext,
) -> float | None:
    """FLOPs of one training step, strategy terms (e.g. a teacher's forward) included.

    Counted on the model itself, whose state (BatchNorm statistics) is restored afterwards, on a
    batch of the first training samples (read directly, so the shuffling of the loader is untouched).
    """
    batch = task.to_device(batch, setup.device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    strategy.train_mode(model)

    def step() -> torch.Tensor:
        with setup.autocast():
            loss, outputs = task.loss_and_outputs(model, batch)
            extra = call(strategy.extra_loss, model, batch=batch, outputs=outputs, context=context)
        return loss if extra is None else loss + extra

    try:
        return flops_per_sample(step, task.batch_size(batch))
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)


# --- suites --------------------------------------------------------------------------------


def _labels(cell: Cell) -> dict[str, Any]:
    return {"task": cell.task, "backbone": cell.backbone, "strategy": cell.strategy, "setting": cell.setting}


@dataclass
class RunSummary:
    """What a suite run did: counts by status, what was reused, and how the executor spread the work."""

    output: Path
    total: int
    reused: int
    executor: str = "sequential"
    statuses: Counter[str] = field(default_factory=Counter)
    #: cells another `bench run` finished while this one was running
    elsewhere: int = 0
    #: cells run per executor slot
    per_slot: Counter[int] = field(default_factory=Counter)
    pretrained: int = 0
    #: why the run stopped before its end (a result it could not write), or None
    stopped: str | None = None

    @property
    def failed(self) -> int:
        return self.statuses["failed"] + self.statuses["diverged"]

    def describe(self) -> str:
        """What was reused, and what this run's executor did, slot by slot (the end of `bench run`)."""
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "nothing to run"
        lines = [f"{self.total} cells: {self.reused} already done, this run: {counts}"]
        ran = sum(self.per_slot.values())
        if ran or self.pretrained:
            slots = ", ".join(f"slot {slot}: {n}" for slot, n in sorted(self.per_slot.items()))
            stages = f"; {self.pretrained} pretraining stage{'s' * (self.pretrained != 1)}" if self.pretrained else ""
            lines.append(f"{self.executor} ran {ran} cell{'s' * (ran != 1)} ({slots}){stages}")
        if self.elsewhere:
            lines.append(f"{self.elsewhere} cells were run by another `bench run` on the same results at the same time")
        return "\n".join(lines)


def _tidy(store: Store, observer: Observer) -> None:
    """Before a run: remove stale temporary files, move corrupt documents aside, name the newer ones.

    Nothing here is needed to run, so a folder it cannot change (read-only) is only reported.
    """
    for path in store.remove_stale_tmp():
        observer.message(f"removed {path}: a temporary file left by a killed `bench run`")
    for folder in (store.cells_dir, store.pretrain_dir):
        for path in sorted(folder.glob("*.json")):
            problem = store.problem(path)
            if problem is None:
                continue
            if problem.kind == "newer":
                observer.message(f"{path}: {problem.reason}; it is kept as it is and its cell is not run")
                continue
            try:
                moved = store.move_aside(path)
            except OSError as exc:
                observer.message(f"{path} is corrupt ({problem.reason}); cannot move it aside: {exc.strerror or exc}")
                continue
            observer.message(f"{path} is corrupt ({problem.reason}); moved to {moved}, its cell is computed again")


def _previous_runs(store: Store, observer: Observer) -> list[dict[str, Any]]:
    """The runs the manifest records; an unreadable manifest is moved aside (and reported)."""
    read = store.read_manifest()
    if read.problem is None:
        return manifest_runs(read.data)
    problem = read.problem
    try:
        moved = store.move_aside(problem.path)
        observer.message(f"{problem}; moved to {moved}, a new manifest is written")
    except OSError as exc:
        observer.message(f"{problem}; cannot move it aside: {exc.strerror or exc}")
    return []


def _record_run(runs: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run history with `run` added; a run of the same cells as the last one (a resume) replaces it."""
    if runs and runs[-1].get("cells") == run["cells"] and runs[-1].get("labels") == run["labels"]:
        return [*runs[:-1], run]
    return [*runs, run]


def run_suite(
    suite: Suite,
    registry: Registry | None = None,
    *,
    fresh: bool = False,
    observer: Observer | None = None,
    executor: Executor | None = None,
    only: CellFilter | None = None,
) -> RunSummary:
    """Run every cell not already `ok` in the store, as jobs on the suite's executor (or `executor`).

    `only` (`bench run --only`) keeps the cells it selects and the teacher cells they need.

    Results are stored as each cell finishes, by whichever process ran it. A result that cannot be
    written (a full disk) stops the run: `RunSummary.stopped` says why, everything stored is kept.
    """
    registry = registry or default_registry()
    # every event goes to the `bench_*` hooks (the progress display, loggers), and to `observer` if given
    observer = HookRelay(registry.pm.hook, observer)
    resolve_device(suite.device, amp=False)  # fail early, before anything runs
    cells = select_cells(plan_cells(suite, registry), only, suite.source)
    store = Store(suite.output_dir())
    planned_at = _now()
    _tidy(store, observer)
    runs = _previous_runs(store, observer)
    executor = executor or registry.create("executor", suite.executor.name, suite.executor.options)
    jobs = plan_jobs(suite, registry, cells, store, planned_at, fresh=fresh, portable=executor.portable)
    for path, problem in store.bad_checkpoints.items():
        observer.message(f"{problem}; {path.name} is built again")
    todo = sum(not job.pretraining for job in jobs)
    summary = RunSummary(store.root, len(cells), len(cells) - todo)
    run: dict[str, Any] = {
        "started_at": planned_at,
        "source": suite.source,
        "settings": suite.model_dump(mode="json"),
        "cells": [c.key for c in cells],
        # the suite's current labels: a cell reused from an earlier run may have been labelled differently
        "labels": {c.key: _labels(c) for c in cells},
    }
    manifest = {
        "suite": suite.name,
        "source": suite.source,
        "settings": run["settings"],
        "cells": run["cells"],
        "labels": run["labels"],
        "started_at": planned_at,
        "runs": _record_run(runs, run),
    }
    try:
        store.write_manifest(manifest)
    except OSError as exc:
        why = f"cannot write {store.manifest_path}: {exc.strerror or exc}"
        if jobs:
            summary.stopped = f"{why}; stopped before running anything"
            return summary
        observer.message(f"{why}; nothing to run, so nothing is lost")
    loggers = _start_loggers(suite, registry, store.root)
    try:
        observer.emit("bench_run_started", suite=suite, cells=cells, done=summary.reused)

        def on_outcome(job: Job, outcome: JobOutcome) -> None:
            result = outcome.result
            assert result is not None
            if job.pretraining:
                summary.pretrained += outcome.how == "ran"
            else:
                summary.statuses[result.status] += 1
                if outcome.how == "ran":
                    summary.per_slot[outcome.slot] += 1
                else:
                    summary.elsewhere += 1
            observer.emit("bench_cell_finished", cell=job.cell, result=result, slot=outcome.slot)

        scheduler = Scheduler(jobs, executor, store, lambda job: None, on_outcome)
        try:
            executor.start(observer, registry)
            summary.executor = executor.describe()
            scheduler.run()
        finally:
            executor.close()
        if scheduler.stopped is not None:
            kept = sum(store.load(c.key) is not None for c in cells)
            summary.stopped = f"{scheduler.stopped}; stopped, {kept} finished cells are kept"
        if jobs and summary.stopped is None:
            _finish_manifest(store, run, observer)
        observer.emit("bench_run_finished", suite=suite, summary=summary)
    finally:
        for logger in loggers:  # also after an interruption: a logger's files and runs are closed
            with contextlib.suppress(Exception):
                logger.close()
            registry.pm.unregister(logger)
    return summary


def _start_loggers(suite: Suite, registry: Registry, output: Path) -> list[Any]:
    """The suite's loggers, registered as plugins for this run."""
    started = []
    for spec in suite.loggers:
        logger = registry.get("logger", spec.name)(spec.options, output=output)  # type: ignore[call-arg]
        registry.pm.register(logger, name=f"logger:{spec.name}:{id(logger)}")
        started.append(logger)
    return started


def _finish_manifest(store: Store, run: dict[str, Any], observer: Observer) -> None:
    """Mark this run finished, in the manifest as it is now (a concurrent run may have written it since)."""
    manifest = store.manifest()
    finished = _now()
    runs = manifest_runs(manifest)
    mine = [r for r in runs if r.get("started_at") == run["started_at"]]
    if mine:
        mine[-1]["finished_at"] = finished
    else:
        runs = _record_run(runs, {**run, "finished_at": finished})
    manifest["runs"] = runs
    if manifest.get("started_at") == run["started_at"]:
        manifest["finished_at"] = finished
    try:
        store.write_manifest(manifest)
    except OSError as exc:
        observer.message(f"cannot write {store.manifest_path}: {exc.strerror or exc}; the results are kept")

"""Running cells and suites: build, train, evaluate, measure, record; one failure never stops a suite."""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from harness.assembly import Parts, assemble
from harness.cell import Cell
from harness.components import TaskModel
from harness.cost import PeakMemory, count_parameters, flops_per_sample
from harness.devices import (
    DeviceSetup,
    execution_settings,
    load_average,
    set_threads,
    setup_for,
    usable_cores,
)
from harness.errors import BenchError, Diverged, Unsupported
from harness.events import CellStarted, Observer
from harness.provenance import provenance
from harness.registry import Registry
from harness.result import CellResult
from harness.store import Store, WriteFailed, write_checkpoint
from harness.training import TrainingLoop


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
    observer.emit(CellStarted(cell=cell, epochs=cell.settings.training.epochs))
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
    training = cell.settings.training
    caps = [t for t in (training.threads, threads) if t]
    set_threads(min(caps) if caps else None)
    parts = Parts.of(cell.settings, registry)  # options only: nothing random is drawn before the cell's seed
    setup = setup_for(device, training, parts.task)
    result.provenance = provenance(setup.name, cell.seed)
    nondeterministic: list[str] = []
    result.provenance["execution"] = {**setup.describe(), "nondeterministic_ops": nondeterministic}
    memory = PeakMemory(setup)  # the cell's own peak: from before its model is built to after its test
    with execution_settings(setup, nondeterministic), memory:
        _train_on(cell, registry, parts, setup, store, observer, result, on_trained)
    result.cost.peak_memory_bytes, result.cost.peak_memory_kind = memory.stop()


def _train_on(
    cell: Cell,
    registry: Registry,
    parts: Parts,
    setup: DeviceSetup,
    store: Store,
    observer: Observer,
    result: CellResult,
    on_trained: Callable[[TaskModel], None] | None,
) -> None:
    assembled = assemble(cell.settings, parts, setup, registry=registry, store=store)
    model, task, strategy = assembled.model, assembled.task, assembled.strategy
    result.provenance["plugins"] = parts.provenance(registry, cell.settings)
    # what loading changed in the training annotations (e.g. boxes clamped or dropped), from the annotations alone
    result.data = parts.dataset.data_report(task.name, "train")
    cost = result.cost
    cost.total_params = count_parameters(model)[1]
    cost.upstream_seconds = upstream_seconds(cell, store)
    cost.device, cost.device_name = str(setup.device), setup.name
    loop = TrainingLoop(assembled, observer)
    cost.flops_per_sample = _count_flops(loop, assembled.first_batch())
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
    result.lower_is_better = [m for m in task.lower_is_better if m in result.metrics]
    # what predicting without looking scores on the same test split, with the same metric code
    test = assembled.loaders["test"]
    result.trivial, result.trivial_predictor = task.trivial(iter(test), assembled.num_classes), task.trivial_predictor
    result.notes = dict(loop.notes)
    # parameters unfrozen during training (gradual unfreezing) count as trainable too
    trained = assembled.trained_at_start | {id(p) for p in model.parameters() if p.requires_grad}
    cost.trainable_params = sum(p.numel() for p in model.parameters() if id(p) in trained)
    evaluated = outcome.model
    if cell.keep_model:
        save_state(evaluated, store.model_path(cell.key))
    if on_trained is not None:
        on_trained(evaluated)


def upstream_seconds(cell: Cell, store: Store) -> float:
    """The training device seconds of the cells `cell` needs (teacher, inputs), each with its own upstream."""
    total = 0.0
    for key in cell.needs:
        result = store.load(key)
        if result is not None:
            total += result.cost.train_seconds + result.cost.upstream_seconds
    return total


def save_state(model: torch.nn.Module, path: Path) -> None:
    """A module's weights, on the CPU, written atomically, with their sha256 in `<path>.sha256`."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    write_checkpoint(path, buffer.getvalue())


def _count_flops(loop: TrainingLoop, batch: Any) -> float | None:
    """FLOPs of one training step, strategy terms included (a teacher's forward, a second pass).

    Counted through the strategy's `take_step` on the model itself, whose state (BatchNorm
    statistics) is restored afterwards, on a batch of the first training samples.
    """
    model, task = loop.model, loop.task
    batch = task.to_device(batch, loop.setup.device)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    loop.strategy.train_mode(model)
    try:
        return flops_per_sample(lambda: loop.gradients(model, batch, 0), task.batch_size(batch), backward=False)
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)

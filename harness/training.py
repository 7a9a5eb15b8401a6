"""The training loop of a cell: optimizer, schedule, AMP, clipping, validation curve.

Written once for every task kind: the task supplies the loss and the metrics, the strategy
supplies the parameter groups and its callbacks, so the loop itself stays a plain loop.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.callbacks import call
from harness.components import ParamGroup, Strategy, Task, TaskModel, TrainingContext
from harness.devices import DeviceSetup, synchronized
from harness.errors import BenchError, Diverged
from harness.progress import Observer
from harness.suite import Training
from harness.timing import warmup_steps


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: torch.utils.data.Dataset,
    task: Task,
    batch_size: int,
    setup: DeviceSetup,
    workers: int,
    *,
    train: bool,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader that keeps a GPU fed (workers, pinned memory) and is seeded for training."""
    generator = torch.Generator().manual_seed(seed) if train else None
    size = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train and size > batch_size,
        collate_fn=task.collate,
        num_workers=workers,
        pin_memory=setup.is_cuda,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=generator,
    )


def build_optimizer(
    groups: Sequence[ParamGroup], training: Training, model: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """The optimizer over a strategy's groups, each at `lr * lr_scale`.

    Frozen parameters stay in their group (they get no gradient, so no update and no weight
    decay) so that a strategy can unfreeze them later at the group's learning rate. With
    `no_decay_norm_bias` (the default; a group may say otherwise with the same key) a group's
    one-dimensional parameters (biases, normalisation weights) go to a twin group without weight
    decay, as torchvision's references (`norm_weight_decay=0`) and timm's
    `param_groups_weight_decay` train; the twin keeps the group's name, rate and scale.
    """
    param_groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for group in groups:
        params = [p for p in group["params"] if id(p) not in seen]
        seen.update(id(p) for p in params)
        if not params:
            continue
        scale = float(group.get("lr_scale", 1.0))
        decay = float(group.get("weight_decay", training.weight_decay))
        name = group.get("name", "")
        split = bool(group.get("no_decay_norm_bias", training.no_decay_norm_bias)) and decay > 0
        flat = [p for p in params if p.ndim <= 1] if split else []
        shaped = [p for p in params if p.ndim > 1] if split else params
        for members, group_decay in ((shaped, decay), (flat, 0.0)):
            if members:
                param_groups.append(
                    {"params": members, "lr": training.lr * scale, "lr_scale": scale, "weight_decay": group_decay,
                     "name": name}
                )  # fmt: skip
    if not any(p.requires_grad for g in param_groups for p in g["params"]):
        raise ValueError("the strategy left no parameter to train")
    if model is not None:
        outside = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
        if outside:
            raise ValueError(f"trainable parameters outside the strategy's groups: {', '.join(outside[:3])}")
    if training.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(param_groups, lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then constant or cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def step_budget(training: Training, steps_per_epoch: int) -> tuple[int, int]:
    """(optimizer steps, epochs) of a cell: `epochs` full passes, cut at `max_steps` if given."""
    total = training.epochs * steps_per_epoch
    if training.max_steps is not None:
        total = min(total, training.max_steps)
    return total, math.ceil(total / steps_per_epoch)


@dataclass
class FitOutcome:
    curve: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    samples: int = 0
    steps: int = 0
    #: the optimizer as training left it (its groups, learning rates and state)
    optimizer: torch.optim.Optimizer | None = None
    #: test-split metrics of the evaluated model (empty when the loop ran without a test split)
    metrics: dict[str, float | None] = field(default_factory=dict)
    #: per-image test scores of the metrics that are means over images (`Task.evaluate_per_image`)
    per_image: dict[str, list[float]] = field(default_factory=dict)
    #: the model that was validated last and tested: the trained one, or what `on_train_end` returned
    model: TaskModel | None = None
    #: of `train_seconds`, the time the loop waited for the next batch (loading and copying it)
    data_wait_seconds: float = 0.0
    #: the steps left out of `samples_per_second` (allocator, kernel selection, compilation)
    warmup_steps: int = 0
    #: training samples per second after the warm-up steps, data wait excluded
    samples_per_second: float = 0.0
    #: the first compiled step's time beyond an ordinary step's (not in `train_seconds`)
    compile_seconds: float = 0.0


def to_memory_format(batch: Any, setup: DeviceSetup) -> Any:
    """With `channels_last`, a batch of images as one 4-D tensor goes NHWC, as the weights do."""
    if setup.channels_last and isinstance(batch, tuple) and isinstance(batch[0], torch.Tensor) and batch[0].ndim == 4:
        return (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
    return batch


def evaluate(
    model: TaskModel, task: Task, loader: DataLoader, setup: DeviceSetup, num_classes: int
) -> dict[str, float | None]:
    """Metrics of `model` on every batch of `loader`, in full precision so they match the references."""
    return evaluate_per_image(model, task, loader, setup, num_classes)[0]


def evaluate_per_image(
    model: TaskModel, task: Task, loader: DataLoader, setup: DeviceSetup, num_classes: int
) -> tuple[dict[str, float | None], dict[str, list[float]]]:
    """As `evaluate`, with the task's per-image scores (`Task.evaluate_per_image`)."""
    model.eval()

    def batches() -> Iterator[Any]:
        for batch in loader:
            yield to_memory_format(task.to_device(batch, setup.device), setup)

    with torch.inference_mode():
        return task.evaluate_per_image(model, batches(), num_classes)


#: seconds between two step events (the progress bar, loggers): reading the loss syncs the device
STEP_EVENT_INTERVAL = 0.2


class TrainingLoop:
    """One cell's training and evaluation, calling the strategy at its documented points.

    Order of calls (docs/writing-plugins.md): for each epoch `on_epoch_start`, `model.train()`,
    `train_mode`; per step `on_step_start`, the task's loss and outputs plus `extra_loss`, backward,
    the optimizer and schedule steps, `on_step_end`; then `on_epoch_end` and the epoch's validation.
    After the last epoch, `on_train_end` picks the model that the final validation and the test see.
    """

    def __init__(
        self,
        model: TaskModel,
        task: Task,
        strategy: Strategy,
        groups: Sequence[ParamGroup],
        loaders: dict[str, DataLoader],
        training: Training,
        setup: DeviceSetup,
        metric: str,
        num_classes: int,
        observer: Observer,
        context: TrainingContext,
    ) -> None:
        self.model, self.task, self.strategy = model, task, strategy
        self.loaders, self.training, self.setup = loaders, training, setup
        self.metric, self.num_classes, self.observer, self.context = metric, num_classes, observer, context
        self.total, self.epochs = step_budget(training, len(loaders["train"]))
        warmup = int(training.warmup_fraction * self.total)
        self.optimizer = build_optimizer(groups, training, model)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total, warmup, training.schedule)
        )
        context.optimizer, context.schedule = self.optimizer, self.schedule
        context.epochs, context.total_steps = self.epochs, self.total

    def evaluate(self, model: TaskModel, split: str) -> dict[str, float | None]:
        """Metrics of `model` on `split` ("val" or "test")."""
        return evaluate(model, self.task, self.loaders[split], self.setup, self.num_classes)

    def run(
        self,
        *,
        model: TaskModel | None = None,
        loaders: dict[str, DataLoader] | None = None,
        train_seconds: float = 0.0,
        eval_seconds: float = 0.0,
    ) -> FitOutcome:
        """Train, validate after every epoch, test. `model` and `loaders` stand in for the cell's own
        (a model sharing its parameters, loaders of the same length); the seconds are work done before
        the loop that counts as training or evaluation (computing cached features)."""
        if loaders is not None:
            self.loaders = {**self.loaders, **loaders}
        model = model or self.model
        strategy, context, setup = self.strategy, self.context, self.setup
        if setup.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.eager = model
        self.forward = self._compiled(model) if setup.compile else model
        self.scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler())
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]
        steps_per_epoch = len(self.loaders["train"])
        outcome = FitOutcome(
            optimizer=self.optimizer, train_seconds=train_seconds, eval_seconds=eval_seconds, model=model
        )
        warmup = warmup_steps(self.total)
        if setup.compile and self.total > 1:
            warmup = max(warmup, 1)  # the compiling step never counts toward the throughput
        outcome.warmup_steps = warmup
        measured_seconds = measured_samples = 0.0
        window = window_wait = first_step_seconds = 0.0  # the throughput window: opened at, data wait then
        step = 0
        for epoch in range(self.epochs):
            call(strategy.on_epoch_start, model, epoch, context=context)
            model.train()
            strategy.train_mode(model)
            self.observer.epoch_started(epoch, min(steps_per_epoch, self.total - step), epochs=self.epochs)
            loss_sum = torch.zeros((), device=setup.device)
            epoch_steps = 0
            batches = iter(self.loaders["train"])
            with synchronized(setup):
                started = last_event = time.perf_counter()
                samples_since = steps_since = 0
                while step < self.total:
                    waiting = time.perf_counter()
                    batch = next(batches, None)
                    if batch is None:
                        break
                    batch = to_memory_format(self.task.to_device(batch, setup.device), setup)
                    now = time.perf_counter()
                    outcome.data_wait_seconds += now - waiting
                    if step == warmup:  # the throughput window opens: what was queued belongs to the warm-up
                        if setup.is_cuda:
                            torch.cuda.synchronize(setup.device)
                        window, window_wait = time.perf_counter(), outcome.data_wait_seconds
                    loss = self._step(model, batch, step)
                    if step == 0 and setup.compile:
                        if setup.is_cuda:
                            torch.cuda.synchronize(setup.device)
                        first_step_seconds = time.perf_counter() - now
                    loss_sum += loss.detach().float()
                    step += 1
                    epoch_steps += 1
                    steps_since += 1
                    size = self.task.batch_size(batch)
                    outcome.samples += size
                    samples_since += size
                    if step > warmup:
                        measured_samples += size
                    now = time.perf_counter()
                    if now - last_event >= STEP_EVENT_INTERVAL or step == self.total or epoch_steps == steps_per_epoch:
                        running = loss_sum.item() / epoch_steps
                        if not math.isfinite(running):
                            raise Diverged(f"non-finite loss at step {step} (epoch {epoch + 1})")
                        group = self.optimizer.param_groups[0]
                        self.observer.step(
                            running,
                            steps_since,
                            step=step,
                            lr=group["lr"] / group.get("lr_scale", 1.0),
                            samples_per_second=samples_since / max(now - last_event, 1e-9),
                        )
                        last_event, samples_since, steps_since = now, 0, 0
                train_loss = loss_sum.item() / max(1, epoch_steps)
                if not math.isfinite(train_loss):
                    raise Diverged(f"non-finite loss in epoch {epoch + 1}")
                call(strategy.on_epoch_end, model, epoch, train_loss=train_loss, context=context)
                last = epoch == self.epochs - 1
                if last:
                    chosen = call(strategy.on_train_end, model, context=context)
                    if chosen is not None:
                        if not isinstance(chosen, TaskModel):
                            raise BenchError(f"on_train_end returned {type(chosen).__name__}, not a TaskModel")
                        outcome.model = model = chosen
            ended = time.perf_counter()
            outcome.train_seconds += ended - started
            if step > warmup:  # the window's part of this epoch, data wait excluded
                opened = max(started, window)
                measured_seconds += ended - opened - (outcome.data_wait_seconds - window_wait)
                window, window_wait = ended, outcome.data_wait_seconds
            outcome.steps = step
            with synchronized(setup):
                started = time.perf_counter()
                val = self.evaluate(model, "val")
            outcome.eval_seconds += time.perf_counter() - started
            self._record(outcome, epoch, step, train_loss, val)
        if setup.compile and step > 1:
            # the first step compiled: its time beyond an ordinary step's is compilation, kept apart
            ordinary = (outcome.train_seconds - train_seconds - first_step_seconds) / (step - 1)
            outcome.compile_seconds = max(0.0, first_step_seconds - ordinary)
            outcome.train_seconds -= outcome.compile_seconds
        elif setup.compile and context.notes.get("compile") == "used":
            context.notes["compile"] = "used; a one-step run: its compile time is in train_seconds"
        if measured_samples and measured_seconds > 0:
            outcome.samples_per_second = measured_samples / measured_seconds
        elif outcome.train_seconds > 0:
            outcome.samples_per_second = outcome.samples / max(outcome.train_seconds - outcome.data_wait_seconds, 1e-9)
        if "test" in self.loaders:
            with synchronized(setup):
                started = time.perf_counter()
                outcome.metrics, outcome.per_image = evaluate_per_image(
                    model, self.task, self.loaders["test"], setup, self.num_classes
                )
            outcome.eval_seconds += time.perf_counter() - started
        return outcome

    def _step(self, model: TaskModel, batch: Any, step: int) -> torch.Tensor:
        """One optimizer step with the strategy's callbacks around it; the loss it took."""
        strategy, context = self.strategy, self.context
        call(strategy.on_step_start, model, step, context=context)
        with self.setup.autocast():
            loss, outputs = self._loss_and_outputs(batch, step)
            extra = call(strategy.extra_loss, model, batch=batch, outputs=outputs, context=context)
            if extra is not None:
                loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.training.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.training.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        call(strategy.on_step_end, model, step, optimizer=self.optimizer, loss=loss, context=context)
        return loss

    def _loss_and_outputs(self, batch: Any, step: int) -> tuple[torch.Tensor, Any]:
        """The task's loss through the compiled forward; on the first step, eager if compiling fails."""
        if self.forward is self.eager or step > 0:
            return self.task.loss_and_outputs(self.forward, batch)  # type: ignore[arg-type]
        try:
            return self.task.loss_and_outputs(self.forward, batch)  # type: ignore[arg-type]
        except Exception as exc:  # the compiler's failure, found at the first call
            self.forward = self._eager_after("failed", exc)
            self.optimizer.zero_grad(set_to_none=True)
            return self.task.loss_and_outputs(self.eager, batch)

    def _compiled(self, model: TaskModel) -> torch.nn.Module:
        """The training forward through `torch.compile` (evaluation stays eager: other shapes, no grads)."""
        try:
            compiled = torch.compile(model)
        except Exception as exc:  # e.g. a Python torch cannot compile on
            return self._eager_after("unavailable", exc)
        self.context.notes["compile"] = "used"
        return compiled  # type: ignore[return-value]

    def _eager_after(self, what: str, exc: Exception) -> TaskModel:
        """Say once, as a warning and in the result's notes, why training goes on without compiling."""
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        warnings.warn(f"torch.compile {what}, training eagerly: {reason}", RuntimeWarning, stacklevel=3)
        self.context.notes["compile"] = f"fell back to eager: {reason}"
        return self.eager

    def _record(
        self, outcome: FitOutcome, epoch: int, step: int, train_loss: float, val: dict[str, float | None]
    ) -> None:
        metric = self.metric
        if metric not in val:
            raise BenchError(f"metric {metric!r} is not reported here; the task reported {', '.join(val)}")
        outcome.curve.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val": val})
        value, best = val[metric], outcome.best.get("value")
        # None: the metric is undefined on this split (e.g. no ground truth); any number beats it
        if not outcome.best or (value is not None and (best is None or value > best)):
            outcome.best = {"metric": metric, "value": value, "epoch": epoch + 1, "step": step}
        self.observer.epoch_finished(epoch, val, train_loss=train_loss, step=step)

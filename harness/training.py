"""The training loop of a cell: optimizer, schedule, AMP, clipping, validation curve.

Written once for every task kind: the task supplies the loss and the metrics, the strategy
supplies the parameter groups and its callbacks, so the loop itself stays a plain loop.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from harness.assembly import AssembledCell
from harness.callbacks import call
from harness.clock import LoopClock
from harness.components import FitOutcome, ParamGroup, Task, TaskModel
from harness.devices import DeviceSetup
from harness.errors import BenchError, Diverged
from harness.events import EpochFinished, EpochStarted, Observer, Step
from harness.settings import Training, step_budget


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
        params = [p for p in group.params if id(p) not in seen]
        seen.update(id(p) for p in params)
        param_groups += _optimizer_groups(group, params, training)
    if not any(p.requires_grad for g in param_groups for p in g["params"]):
        raise ValueError("the strategy left no parameter to train")
    if model is not None:
        outside = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
        if outside:
            raise ValueError(f"trainable parameters outside the strategy's groups: {', '.join(outside[:3])}")
    if training.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(param_groups, lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay)


def _optimizer_groups(group: ParamGroup, params: list[torch.nn.Parameter], training: Training) -> list[dict[str, Any]]:
    """A strategy's group as torch's: one, or two with its one-dimensional parameters apart, without decay."""
    decay = training.weight_decay if group.weight_decay is None else float(group.weight_decay)
    own = group.no_decay_norm_bias
    split = (training.no_decay_norm_bias if own is None else own) and decay > 0
    flat = [p for p in params if p.ndim <= 1] if split else []
    shaped = [p for p in params if p.ndim > 1] if split else params
    scale = float(group.lr_scale)
    common = {"lr": training.lr * scale, "lr_scale": scale, "name": group.name}
    return [
        {"params": members, "weight_decay": group_decay, **common}
        for members, group_decay in ((shaped, decay), (flat, 0.0))
        if members
    ]


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warmup over `warmup` steps, then constant or cosine decay to zero at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


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
    `train_mode`; per step `on_step_start`, `take_step` (by default one closure: the task's loss and
    outputs plus `extra_loss`, backward), clipping, the optimizer and schedule steps, `on_step_end`;
    then `on_epoch_end` and the epoch's validation. After the last epoch, `on_train_end` picks the
    model that the final validation and the test see; with `select_epoch = "best_val"` the test sees
    the model as it was at the epoch of the best validation score (its state kept in memory, on the CPU).

    The loop hands each callback what it asks for (`context`, `optimizer`, `schedule`, `notes`, ...);
    it writes nothing into the strategy's context. Its timing bookkeeping is a `LoopClock`.
    """

    def __init__(self, cell: AssembledCell, observer: Observer | None = None) -> None:
        self.cell, self.observer = cell, observer or Observer()
        self.model, self.task, self.strategy, self.setup = cell.model, cell.task, cell.strategy, cell.setup
        self.context, self.training = cell.context, cell.spec.training
        self.loaders = dict(cell.loaders)
        #: what the strategy and the loop record with the result, e.g. {"feature_cache": "used"}
        self.notes = cell.notes
        self.total, self.epochs = step_budget(self.training, len(self.loaders["train"]))
        warmup = int(self.training.warmup_fraction * self.total)
        self.optimizer = build_optimizer(cell.groups, self.training, self.model)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, self.total, warmup, self.training.schedule)
        )
        #: with `select_epoch = "best_val"`: the model validated best so far and a CPU copy of its state then
        self.kept: tuple[TaskModel, dict[str, torch.Tensor]] | None = None
        #: what every callback may ask for by name, besides its own arguments
        self.offered: dict[str, Any] = {
            "context": self.context,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "notes": self.notes,
        }
        self._use(self.model)

    @property
    def metric(self) -> str:
        return self.cell.spec.task.metric

    def evaluate(self, model: TaskModel, split: str) -> dict[str, float | None]:
        """Metrics of `model` on `split` ("val" or "test")."""
        return evaluate(model, self.task, self.loaders[split], self.setup, self.cell.num_classes)

    def _use(self, model: TaskModel) -> None:
        """Make `model` the one the training steps train: its memory format, its forward, a grad scaler."""
        setup = self.setup
        if setup.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.eager = model
        self.forward: torch.nn.Module = model
        self.scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler())
        self.trainable = [p for g in self.optimizer.param_groups for p in g["params"]]

    def run(
        self,
        *,
        model: TaskModel | None = None,
        loaders: dict[str, DataLoader] | None = None,
        train_seconds: float = 0.0,
        eval_seconds: float = 0.0,
        train: bool = True,
    ) -> FitOutcome:
        """Train, validate after every epoch, test. `model` and `loaders` stand in for the cell's own
        (a model sharing its parameters, loaders of the same length); the seconds are work done before
        the loop that counts as training or evaluation (computing cached features, making a soup).
        With `train=False` nothing trains and no training callback is called: `model` is validated
        once (a curve of one point, epoch 0, no training loss) and tested."""
        if loaders is not None:
            self.loaders = {**self.loaders, **loaders}
        model = model or self.model
        if model is not self.eager:
            self._use(model)
        if self.setup.compile:
            self.forward = self._compiled(model)
        sync = (lambda: torch.cuda.synchronize(self.setup.device)) if self.setup.is_cuda else (lambda: None)
        clock = LoopClock(self.total, sync, self.setup.compile, train_seconds, eval_seconds)
        outcome = FitOutcome(optimizer=self.optimizer, model=model, warmup_steps=clock.warmup)
        step, self.kept = 0, None
        if not train:
            with clock.evaluation():
                val = self.evaluate(model, "val")
            self._record(outcome, -1, 0, None, val)
        for epoch in range(self.epochs if train else 0):
            step, train_loss = self._epoch(outcome, clock, epoch, step)
            outcome.steps = step
            with clock.evaluation():
                val = self.evaluate(outcome.model, "val")  # type: ignore[arg-type]
            self._record(outcome, epoch, step, train_loss, val)
        if train:
            self._select_epoch(outcome)
        self._finish(outcome, clock, step)
        return outcome

    def _select_epoch(self, outcome: FitOutcome) -> None:
        """With `select_epoch = "best_val"`, give the test the model of the best validation epoch, and say which."""
        if self.training.select_epoch != "best_val" or not outcome.curve:
            return
        last, best = outcome.curve[-1]["epoch"], outcome.best.get("epoch")
        if self.kept is None or best is None:  # the metric was undefined on every validation
            self.notes["select_epoch"] = f"test metrics are from epoch {last} (the last: no validation {self.metric})"
            return
        if best != last:
            model, state = self.kept
            model.load_state_dict(state)
            outcome.model = model
        self.notes["select_epoch"] = f"test metrics are from epoch {best} (best validation {self.metric})"
        self.kept = None

    def _epoch(self, outcome: FitOutcome, clock: LoopClock, epoch: int, step: int) -> tuple[int, float]:
        """Train one epoch from step `step`; (the steps done in all, the epoch's mean training loss)."""
        model, strategy, setup = outcome.model, self.strategy, self.setup
        assert model is not None
        call(strategy.on_epoch_start, model, epoch, **self.offered)
        model.train()
        strategy.train_mode(model)
        steps_per_epoch = len(self.loaders["train"])
        self.observer.emit(EpochStarted(epoch=epoch, steps=min(steps_per_epoch, self.total - step), epochs=self.epochs))
        loss_sum = torch.zeros((), device=setup.device)
        epoch_steps = 0
        batches = iter(self.loaders["train"])
        progress = _StepEvents(self.observer, self.optimizer)
        clock.start_epoch()
        while step < self.total:
            batch = clock.next_batch(batches, self.on_device)
            if batch is None:
                break
            clock.before_step(step)
            loss = self.train_step(model, batch, step)
            size = self.task.batch_size(batch)
            clock.after_step(step, size)
            loss_sum += loss.detach().float()
            step, epoch_steps = step + 1, epoch_steps + 1
            outcome.samples += size
            if progress.due(size) or step == self.total or epoch_steps == steps_per_epoch:
                progress.send(loss_sum, epoch_steps, step, epoch)
        train_loss = loss_sum.item() / max(1, epoch_steps)
        if not math.isfinite(train_loss):
            raise Diverged(f"non-finite loss in epoch {epoch + 1}")
        call(strategy.on_epoch_end, model, epoch, train_loss=train_loss, **self.offered)
        if epoch == self.epochs - 1:
            chosen = call(strategy.on_train_end, model, **self.offered)
            if chosen is not None:
                if not isinstance(chosen, TaskModel):
                    raise BenchError(f"on_train_end returned {type(chosen).__name__}, not a TaskModel")
                outcome.model = chosen
        clock.end_epoch(step)
        return step, train_loss

    def on_device(self, batch: Any) -> Any:
        """A loader's batch on the cell's device, in its memory format."""
        return to_memory_format(self.task.to_device(batch, self.setup.device), self.setup)

    def _finish(self, outcome: FitOutcome, clock: LoopClock, step: int) -> None:
        """The run's timings, and the test split's metrics of the selected model (by default the one validated last)."""
        outcome.compile_seconds = clock.compile_seconds(step)
        if self.setup.compile and step <= 1 and self.notes.get("compile") == "used":
            self.notes["compile"] = "used; a one-step run: its compile time is in train_seconds"
        outcome.samples_per_second = clock.samples_per_second(outcome.samples)
        if "test" in self.loaders:
            with clock.evaluation():
                outcome.metrics, outcome.per_image = evaluate_per_image(
                    outcome.model,  # type: ignore[arg-type]
                    self.task,
                    self.loaders["test"],
                    self.setup,
                    self.cell.num_classes,
                )
        outcome.train_seconds, outcome.eval_seconds = clock.train_seconds, clock.eval_seconds
        outcome.data_wait_seconds = clock.data_wait_seconds

    def train_step(self, model: TaskModel, batch: Any, step: int) -> torch.Tensor:
        """One optimizer step with the strategy's callbacks around it; the loss it took.

        The strategy's `take_step` computes the gradients (one closure by default, two for SAM); then
        the loop unscales them (AMP), clips them (`grad_clip`), steps the optimizer through the grad
        scaler and the schedule. Used by `run` and by the estimate's calibration alike."""
        strategy = self.strategy
        call(strategy.on_step_start, model, step, **self.offered)
        loss = self.gradients(model, batch, step)
        if self.training.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, self.training.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        call(strategy.on_step_end, model, step, loss=loss, **self.offered)
        return loss

    def gradients(self, model: TaskModel, batch: Any, step: int) -> torch.Tensor:
        """The gradients of one step, through the strategy's `take_step`; the loss it took. Also what
        the runner counts a step's FLOPs on."""
        closure = self.closure(model, batch, step)
        return call(self.strategy.take_step, model, closure, grad_scale=self._grad_scale, **self.offered)  # type: ignore[no-any-return]

    def _grad_scale(self) -> float:
        """The grad scaler's factor now (1.0 without one): gradients read before the step are this much too large."""
        return float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0

    def closure(self, model: TaskModel, batch: Any, step: int) -> Callable[[], torch.Tensor]:
        """Zero the gradients, then the task's loss plus the strategy's `extra_loss` under the cell's
        precision, backward through the grad scaler; returns the loss (unscaled)."""

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with self.setup.autocast():
                loss, outputs = self._loss_and_outputs(batch, step)
                extra = call(self.strategy.extra_loss, model, batch=batch, outputs=outputs, **self.offered)
                if extra is not None:
                    loss = loss + extra
            self.scaler.scale(loss).backward()
            return loss

        return closure

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
        self.notes["compile"] = "used"
        return compiled  # type: ignore[return-value]

    def _eager_after(self, what: str, exc: Exception) -> TaskModel:
        """Say once, as a warning and in the result's notes, why training goes on without compiling."""
        text = str(exc).strip()
        reason = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        warnings.warn(f"torch.compile {what}, training eagerly: {reason}", RuntimeWarning, stacklevel=3)
        self.notes["compile"] = f"fell back to eager: {reason}"
        return self.eager

    def _record(
        self, outcome: FitOutcome, epoch: int, step: int, train_loss: float | None, val: dict[str, float | None]
    ) -> None:
        metric = self.metric
        if metric not in val:
            raise BenchError(f"metric {metric!r} is not reported here; the task reported {', '.join(val)}")
        outcome.curve.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val": val})
        value, best = val[metric], outcome.best.get("value")
        # None: the metric is undefined on this split (e.g. no ground truth); any number beats it
        better = value is not None and (best is None or self.task.better(metric, value, best))
        if not outcome.best or better:
            outcome.best = {"metric": metric, "value": value, "epoch": epoch + 1, "step": step}
        if better and self.training.select_epoch == "best_val":
            model = outcome.model
            assert model is not None
            self.kept = model, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.observer.emit(EpochFinished(epoch=epoch, step=step, train_loss=train_loss, val=val))


class _StepEvents:
    """Step events at most every `STEP_EVENT_INTERVAL` seconds: reading the running loss syncs the device."""

    def __init__(self, observer: Observer, optimizer: torch.optim.Optimizer) -> None:
        self.observer, self.optimizer = observer, optimizer
        self.last = time.perf_counter()
        self.samples = self.steps = 0

    def due(self, samples: int) -> bool:
        self.samples, self.steps = self.samples + samples, self.steps + 1
        return time.perf_counter() - self.last >= STEP_EVENT_INTERVAL

    def send(self, loss_sum: torch.Tensor, epoch_steps: int, step: int, epoch: int) -> None:
        running = loss_sum.item() / epoch_steps
        if not math.isfinite(running):
            raise Diverged(f"non-finite loss at step {step} (epoch {epoch + 1})")
        now = time.perf_counter()
        group = self.optimizer.param_groups[0]
        self.observer.emit(
            Step(
                loss=running,
                steps=self.steps,
                step=step,
                lr=group["lr"] / group.get("lr_scale", 1.0),
                samples_per_second=self.samples / max(now - self.last, 1e-9),
            )
        )
        self.last, self.samples, self.steps = now, 0, 0

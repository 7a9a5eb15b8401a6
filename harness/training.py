"""The training loop of a cell: optimizer, schedule, AMP, clipping, validation curve.

Written once for every task kind: the task supplies the loss and the metrics, the strategy
supplies the parameter groups and its callbacks, so the loop itself stays a plain loop.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.components import ParamGroup, Strategy, Task, TaskModel
from harness.devices import DeviceSetup, synchronized
from harness.errors import BenchError, Diverged
from harness.progress import Observer
from harness.suite import Training


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
    decay) so that a strategy can unfreeze them later at the group's learning rate.
    """
    param_groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    for group in groups:
        params = [p for p in group["params"] if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            scale = float(group.get("lr_scale", 1.0))
            decay = float(group.get("weight_decay", training.weight_decay))
            name = group.get("name", "")
            param_groups.append(
                {"params": params, "lr": training.lr * scale, "lr_scale": scale, "weight_decay": decay, "name": name}
            )
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


def evaluate(
    model: TaskModel, task: Task, loader: DataLoader, setup: DeviceSetup, num_classes: int
) -> dict[str, float | None]:
    """Metrics of `model` on every batch of `loader`, in full precision so they match the references."""
    model.eval()

    def batches() -> Iterator[Any]:
        for batch in loader:
            yield task.to_device(batch, setup.device)

    with torch.inference_mode():
        return task.evaluate(model, batches(), num_classes)


def fit(
    model: TaskModel,
    task: Task,
    strategy: Strategy,
    groups: Sequence[ParamGroup],
    train_loader: DataLoader,
    val_loader: DataLoader,
    training: Training,
    setup: DeviceSetup,
    metric: str,
    num_classes: int,
    observer: Observer,
) -> FitOutcome:
    """Train for `training.epochs` (or `max_steps`), validating after every epoch."""
    steps_per_epoch = len(train_loader)
    total, epochs = step_budget(training, steps_per_epoch)
    warmup = int(training.warmup_fraction * total)
    optimizer = build_optimizer(groups, training, model)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup, training.schedule))
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler())
    trainable = [p for g in optimizer.param_groups for p in g["params"]]
    # reading the loss forces a device sync; on CUDA do it every few steps only
    check_every = 10 if setup.is_cuda else 1
    outcome = FitOutcome(optimizer=optimizer)
    step = 0
    for epoch in range(epochs):
        strategy.on_epoch_start(model, epoch)
        model.train()
        strategy.train_mode(model)
        observer.epoch_started(epoch, min(steps_per_epoch, total - step))
        loss_sum = torch.zeros((), device=setup.device)
        epoch_steps = 0
        with synchronized(setup):
            started = time.perf_counter()
            for batch in train_loader:
                if step >= total:
                    break
                strategy.on_step_start(model, step)
                batch = task.to_device(batch, setup.device)
                with setup.autocast():
                    loss = task.loss(model, batch)
                    extra = strategy.extra_loss(model)
                    if extra is not None:
                        loss = loss + extra
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if training.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, training.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                loss_sum += loss.detach().float()
                step += 1
                epoch_steps += 1
                outcome.samples += task.batch_size(batch)
                if step % check_every == 0 or step == total:
                    running = loss_sum.item() / epoch_steps
                    if not math.isfinite(running):
                        raise Diverged(f"non-finite loss at step {step} (epoch {epoch + 1})")
                    observer.step(running)
        outcome.train_seconds += time.perf_counter() - started
        outcome.steps = step
        with synchronized(setup):
            started = time.perf_counter()
            val = evaluate(model, task, val_loader, setup, num_classes)
        outcome.eval_seconds += time.perf_counter() - started
        train_loss = loss_sum.item() / max(1, epoch_steps)
        if not math.isfinite(train_loss):
            raise Diverged(f"non-finite loss in epoch {epoch + 1}")
        if metric not in val:
            raise BenchError(f"metric {metric!r} is not reported here; the task reported {', '.join(val)}")
        outcome.curve.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss, "val": val})
        value, best = val[metric], outcome.best.get("value")
        # None: the metric is undefined on this split (e.g. no ground truth); any number beats it
        if not outcome.best or (value is not None and (best is None or value > best)):
            outcome.best = {"metric": metric, "value": value, "epoch": epoch + 1, "step": step}
        observer.epoch_finished(epoch, val)
    return outcome

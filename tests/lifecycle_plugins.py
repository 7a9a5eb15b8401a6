"""Strategies for tests/test_lifecycle.py, in a module of their own so worker processes can import them."""

from __future__ import annotations

import copy
from typing import Any

import torch

from harness import Backbone, ParamGroup, Strategy, StrategyOptions, TaskModel, TrainingContext, hookimpl
from harness.freezing import backbone_and_head_groups, set_trainable


class Recording(Strategy):
    """Full fine-tuning that writes down every callback: its name, counter, mode and arguments."""

    name = "recording"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.calls: list[tuple[Any, ...]] = []

    def _note(self, name: str, model: TaskModel, *extra: Any) -> None:
        self.calls.append((name, *extra, model.training, torch.is_grad_enabled()))

    def prepare(self, model: TaskModel, context: TrainingContext, **offered: Any) -> list[ParamGroup]:
        self._note("prepare", model, "optimizer" not in offered, context.epochs)
        set_trainable(model, True)
        return backbone_and_head_groups(model)

    def on_epoch_start(self, model: TaskModel, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        self._note("on_epoch_start", model, epoch, optimizer is not None)

    def on_step_start(self, model: TaskModel, step: int) -> None:
        self._note("on_step_start", model, step)

    def extra_loss(self, model: TaskModel, batch: Any, outputs: Any) -> torch.Tensor | None:
        self._note("extra_loss", model, len(batch[0]), tuple(outputs.shape))
        return None

    def on_step_end(self, model: TaskModel, step: int, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        self._note("on_step_end", model, step, isinstance(optimizer, torch.optim.Optimizer), loss.ndim)

    def on_epoch_end(self, model: TaskModel, epoch: int, train_loss: float) -> None:
        self._note("on_epoch_end", model, epoch, train_loss > 0)

    def on_train_end(self, model: TaskModel, context: TrainingContext) -> TaskModel:
        self._note("on_train_end", model)
        chosen = copy.deepcopy(model)  # a different model is evaluated: its head's outputs are all equal
        with torch.no_grad():
            for parameter in chosen.head.parameters():
                parameter.zero_()
        self.chosen = chosen
        return chosen


class NeedsWideBackbone(Strategy):
    """Refuses, when the suite is planned, a backbone whose last stage is narrower than 1000 channels."""

    name = "needs_wide"

    def check(self, task_kind: str, backbone: Backbone) -> str | None:
        channels = backbone.build().channels[-1]
        return None if channels >= 1000 else f"needs a last stage of >= 1000 channels, {backbone.name} has {channels}"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        return backbone_and_head_groups(model)


class DefaultedOptions(StrategyOptions):
    strength: float = 1.0


class Defaulted(Strategy):
    """Full fine-tuning with an option whose default a "new release" changes (see the test)."""

    name = "defaulted"
    Options = DefaultedOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        return backbone_and_head_groups(model)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Recording, NeedsWideBackbone, Defaulted]

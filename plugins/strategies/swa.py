"""`swa`: Stochastic Weight Averaging: the weights averaged over the last epochs, trained at an SWA learning rate.

SWA (Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018).
Everything trains as in `full` until the start epoch, `floor(start x epochs)` (0-based; at most the
last epoch, so at least one epoch is averaged). From then on every step runs at the SWA learning
rate instead of the suite's schedule, for every parameter group at its own `lr_scale`:

- `constant`: `swa_lr_scale` x the group's base rate;
- `cyclic`: one cycle per epoch, the paper's alpha(i) = (1 - t(i)) alpha_1 + t(i) alpha_2 with
  t(i) = i / n at the i-th of the epoch's n steps (1-based), alpha_1 = `swa_lr_scale` x and
  alpha_2 = `swa_min_lr_scale` x the base rate: the epoch's last step runs at alpha_2, right before
  the weights are averaged.

At the end of each epoch from the start epoch on (`on_epoch_end`) the weights join an equal-weight
running average (`torch.optim.swa_utils.AveragedModel`, parameters only). At the end of training
the average's BatchNorm statistics are recomputed over one pass of the training data
(`harness.weight_averaging.recompute_batchnorm`, `update_bn`'s semantics through the task's loss),
in the BatchNorm layers the policy trains, and the average is the model evaluated; earlier
validation points of the curve are the trained model's.

The learning rate is set before each step (`on_step_start`) and again for the next step after the
schedule has stepped (`on_step_end`), so the optimizer uses it and the progress display reports it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch.optim.swa_utils import AveragedModel

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    TrainingContext,
    backbone_and_head_groups,
    batchnorm_layers,
    hookimpl,
    recompute_batchnorm,
    set_trainable,
)


class SWAOptions(StrategyOptions):
    #: averaging starts at epoch floor(start x epochs) (0-based); 0 averages every epoch
    start: Annotated[float, Field(ge=0, lt=1)] = 0.75
    #: the learning rate from the start epoch on: constant, or one linear decay per epoch
    schedule: Literal["constant", "cyclic"] = "constant"
    #: the SWA learning rate (cyclic: at each epoch's start) as a multiple of each group's base rate
    swa_lr_scale: Annotated[float, Field(gt=0, le=100)] = 0.5
    #: cyclic only: the rate at each epoch's last step, as a multiple of each group's base rate
    swa_min_lr_scale: Annotated[float, Field(ge=0, le=100)] = 0.05

    @model_validator(mode="after")
    def _cycle(self) -> SWAOptions:
        if self.schedule == "cyclic" and self.swa_min_lr_scale > self.swa_lr_scale:
            raise ValueError("swa_min_lr_scale must not exceed swa_lr_scale")
        return self


def start_epoch(start: float, epochs: int) -> int:
    """The first averaged epoch (0-based) of a run of `epochs` epochs."""
    return max(0, min(epochs - 1, math.floor(start * epochs + 1e-9)))


class SWA(Strategy):
    """Fine-tune everything; from the start epoch on, train at the SWA rate and average the weights per epoch."""

    name = "swa"
    Options = SWAOptions
    options: SWAOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        self.average: AveragedModel | None = None
        return backbone_and_head_groups(model)

    def lr_factor(self, step: int, context: TrainingContext) -> float | None:
        """The SWA rate of optimizer step `step` as a multiple of the base rate, or None before the start epoch."""
        per_epoch = context.steps_per_epoch
        epoch = step // per_epoch
        if epoch < start_epoch(self.options.start, context.epochs):
            return None
        if self.options.schedule == "constant":
            return self.options.swa_lr_scale
        steps = min(per_epoch, context.total_steps - epoch * per_epoch)  # the last epoch may be cut short
        t = (step - epoch * per_epoch + 1) / steps
        return (1 - t) * self.options.swa_lr_scale + t * self.options.swa_min_lr_scale

    def _set_lr(self, step: int, context: TrainingContext, optimizer: torch.optim.Optimizer) -> None:
        factor = self.lr_factor(step, context)
        if factor is not None:
            for group in optimizer.param_groups:
                group["lr"] = factor * group["initial_lr"]

    def on_step_start(
        self, model: TaskModel, step: int, context: TrainingContext, optimizer: torch.optim.Optimizer
    ) -> None:
        self._set_lr(step, context, optimizer)

    def on_step_end(
        self, model: TaskModel, step: int, context: TrainingContext, optimizer: torch.optim.Optimizer
    ) -> None:
        if step + 1 < context.total_steps:
            self._set_lr(step + 1, context, optimizer)  # what the progress display and loggers show as the rate

    def on_epoch_end(self, model: TaskModel, epoch: int, context: TrainingContext, notes: dict[str, Any]) -> None:
        if epoch < start_epoch(self.options.start, context.epochs):
            return
        if self.average is None:
            self.average = AveragedModel(model)
            for parameter in self.average.parameters():
                parameter.grad = None  # deepcopy copies the gradients too
            self.average.requires_grad_(False)
        self.average.update_parameters(model)
        notes["swa_start_epoch"] = start_epoch(self.options.start, context.epochs)
        notes["swa_averaged_epochs"] = int(self.average.n_averaged)

    def on_train_end(self, model: TaskModel, context: TrainingContext) -> TaskModel:
        if self.average is None:
            raise RuntimeError("swa: training ended before the first averaged epoch")
        module = self.average.module
        assert isinstance(module, TaskModel)
        # the BatchNorm layers whose statistics the policy updates in training (all, by default)
        module.train()
        self.train_mode(module)
        layers = [m for m in batchnorm_layers(module) if m.training]
        if layers:
            if context.train_loader is None:
                raise RuntimeError("swa needs the training loader to recompute BatchNorm statistics")
            recompute_batchnorm(
                module, context.task, context.train_loader, context.device, layers=layers, autocast=context.autocast
            )
        return module


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [SWA]

"""`gradual_unfreeze`: first only the new parts train; every N epochs (or steps) one more stage unfreezes.

Stages unfreeze from the output toward the input (ULMFiT). Every stage is in the optimizer
from the start at its own learning rate; a frozen stage gets no gradient, so it is neither
updated nor decayed until it unfreezes, and then it trains at the current scheduled rate.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, hookimpl, set_trainable, stage_groups


class GradualUnfreezeOptions(StrategyOptions):
    #: unfreeze one more stage every this many epochs ...
    every_epochs: Annotated[int, Field(ge=1)] | None = None
    #: ... or every this many optimizer steps (default: every epoch)
    every_steps: Annotated[int, Field(ge=1)] | None = None
    #: stop after unfreezing this many stages (default: all)
    max_stages: Annotated[int, Field(ge=0)] | None = None
    head_lr_scale: Annotated[float, Field(gt=0, le=1000)] = 1.0

    @model_validator(mode="after")
    def _one_clock(self) -> GradualUnfreezeOptions:
        if self.every_epochs is not None and self.every_steps is not None:
            raise ValueError("give at most one of every_epochs, every_steps")
        return self


class GradualUnfreeze(Strategy):
    """Train the new parts, then unfreeze the backbone one stage at a time from the top."""

    name = "gradual_unfreeze"
    Options = GradualUnfreezeOptions
    options: GradualUnfreezeOptions
    default_batchnorm = "frozen_parts"

    def unfrozen_stages(self, epoch: int, step: int, stages: int) -> int:
        """How many stages (from the output) train at this point of the run."""
        if self.options.every_steps is not None:
            count = step // self.options.every_steps
        else:
            count = epoch // (self.options.every_epochs or 1)
        limit = stages if self.options.max_stages is None else min(stages, self.options.max_stages)
        return min(count, limit)

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        return stage_groups(model, [1.0] * len(model.backbone.stages), self.options.head_lr_scale)

    def _unfreeze(self, model: TaskModel, epoch: int, step: int) -> None:
        stages = model.backbone.stages
        count = self.unfrozen_stages(epoch, step, len(stages))
        for i, stage in enumerate(stages):
            set_trainable(stage, i >= len(stages) - count)

    def on_epoch_start(self, model: TaskModel, epoch: int) -> None:
        if self.options.every_steps is None:
            self._unfreeze(model, epoch, 0)

    def on_step_start(self, model: TaskModel, step: int) -> None:
        if self.options.every_steps is not None and step % self.options.every_steps == 0:
            self._unfreeze(model, 0, step)
            if model.training:
                self.train_mode(model)  # newly unfrozen BatchNorm layers start updating statistics


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [GradualUnfreeze]

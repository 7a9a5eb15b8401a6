"""`discriminative_lr`: everything trains, the new parts at a multiple of the base learning rate.

The classic recipe (10x for the randomly initialised head), optionally with layer-wise
learning-rate decay: the last stage at the base rate, each stage nearer the input at
`stage_decay` times the one after it (ULMFiT's discriminative fine-tuning, BEiT's LLRD).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, hookimpl, set_trainable, stage_groups


class DiscriminativeLROptions(StrategyOptions):
    head_lr_scale: Annotated[float, Field(gt=0, le=1000)] = 10.0
    #: per-stage factor toward the input; 1.0 keeps one rate for the whole backbone
    stage_decay: Annotated[float, Field(gt=0, le=1)] = 1.0


class DiscriminativeLR(Strategy):
    """Fine-tune everything; new parts at `head_lr_scale` x the base rate, stages decaying toward the input."""

    name = "discriminative_lr"
    Options = DiscriminativeLROptions
    options: DiscriminativeLROptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        n = len(model.backbone.stages)
        scales = [self.options.stage_decay ** (n - 1 - i) for i in range(n)]
        return stage_groups(model, scales, self.options.head_lr_scale)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [DiscriminativeLR]

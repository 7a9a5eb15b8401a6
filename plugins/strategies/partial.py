"""`partial`: freeze the first k backbone stages (or train only the last k); new parts always train.

The classic "freeze the early layers" recipe: low-level features transfer, so only the later
stages adapt. Frozen stages keep their BatchNorm statistics by default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    check_stage_count,
    hookimpl,
    set_trainable,
    with_head,
)


class PartialOptions(StrategyOptions):
    #: freeze this many stages from the input ...
    freeze_stages: Annotated[int, Field(ge=0)] | None = None
    #: ... or train only this many stages from the output
    train_stages: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PartialOptions:
        if (self.freeze_stages is None) == (self.train_stages is None):
            raise ValueError("give exactly one of freeze_stages, train_stages")
        return self


class Partial(Strategy):
    """Freeze the first backbone stages; the later stages and the new parts train."""

    name = "partial"
    Options = PartialOptions
    options: PartialOptions
    default_batchnorm = "frozen_parts"

    def frozen_count(self, model: TaskModel) -> int:
        stages = len(model.backbone.stages)
        if self.options.freeze_stages is not None:
            check_stage_count(model, self.options.freeze_stages, "freeze_stages")
            return self.options.freeze_stages
        assert self.options.train_stages is not None
        check_stage_count(model, self.options.train_stages, "train_stages")
        return stages - self.options.train_stages

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        frozen = self.frozen_count(model)
        set_trainable(model, True)
        for stage in model.backbone.stages[:frozen]:
            set_trainable(stage, False)
        trained = [p for stage in model.backbone.stages[frozen:] for p in stage.parameters()]
        return with_head(model, trained, "backbone")


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Partial]

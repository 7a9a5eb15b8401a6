"""`surgical`: fine-tune one backbone stage and the new parts, nothing else (Lee et al., 2023).

Surgical fine-tuning: which layers should adapt depends on the distribution shift; the first
stage for input-level shifts (corruptions), the last ones for shifts in the labels or features.
"""

from typing import Any

from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, hookimpl


class SurgicalOptions(StrategyOptions):
    stage: int = Field(0, description="the backbone stage that trains: 0 the first, -1 the last")


class Surgical(Strategy):
    """Fine-tune one backbone stage (`stage`, default the first) and the new parts; freeze the rest."""

    name = "surgical"
    Options = SurgicalOptions
    options: SurgicalOptions
    default_batchnorm = "frozen_parts"  # the frozen stages keep their pretrained statistics

    def prepare(self, model: TaskModel, notes: dict[str, Any]) -> list[ParamGroup]:
        # how many stages there are is known once the backbone is built: checked here, not in `check`
        stages, stage = model.backbone.stages, self.options.stage
        if not -len(stages) <= stage < len(stages):
            raise ValueError(f"stage = {stage}, but the backbone has {len(stages)} stages (0 to {len(stages) - 1})")
        index = stage % len(stages)
        notes["stage"] = index  # stored with the result: which stage `-1` was
        model.requires_grad_(False)
        stages[index].requires_grad_(True)
        model.head.requires_grad_(True)
        return [
            ParamGroup(params=list(stages[index].parameters()), lr_scale=1.0, name=f"stage{index}"),
            ParamGroup(params=list(model.head.parameters()), lr_scale=1.0, name="head"),
        ]


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Surgical]

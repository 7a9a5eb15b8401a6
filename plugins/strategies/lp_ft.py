"""`lp_ft`: a linear probe for the first epochs, then full fine-tuning (LP-FT).

LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022): fine-tuning with a random head distorts the pretrained features
while the head is still bad; training the head first on frozen features, then everything, keeps
them. For the first `probe_epochs` epochs only the new parts train, the backbone is frozen and its
BatchNorm statistics fixed (policy `frozen_parts`, as `linear_probe`); from epoch `probe_epochs`
(0-based) on everything trains and the backbone's statistics update. The backbone is in the
optimizer from the start at the base rate: it gets no gradient while frozen, so it is neither
updated nor decayed, and its optimizer state starts at its first gradient. The learning-rate
schedule runs over the whole run, probe included.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    TrainingContext,
    backbone_and_head_groups,
    hookimpl,
    set_trainable,
)


class LPFTOptions(StrategyOptions):
    #: epochs with a frozen backbone (the run needs at least one more)
    probe_epochs: Annotated[int, Field(ge=1)] = 1


class LPFT(Strategy):
    """Train the new parts for `probe_epochs` epochs on the frozen backbone, then fine-tune everything."""

    name = "lp_ft"
    Options = LPFTOptions
    options: LPFTOptions
    default_batchnorm = "frozen_parts"  # the backbone's statistics stay fixed while it is frozen

    def prepare(self, model: TaskModel, context: TrainingContext) -> list[ParamGroup]:
        probe = self.options.probe_epochs
        if probe >= context.epochs:
            raise ValueError(
                f"lp_ft: probe_epochs = {probe} leaves no epoch to fine-tune in a run of {context.epochs} epochs"
            )
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        return backbone_and_head_groups(model)

    def on_epoch_start(self, model: TaskModel, epoch: int) -> None:
        set_trainable(model.backbone, epoch >= self.options.probe_epochs)  # the loop applies the BatchNorm policy


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [LPFT]

"""`wise_ft`: full fine-tuning, then the backbone's weights interpolated back toward the pretrained ones.

WiSE-FT (Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022): the evaluated
backbone is (1 - alpha) * theta_0 + alpha * theta_ft, with theta_0 its weights when training
starts (at `prepare`: the pretrained ones) and theta_ft the fine-tuned ones. alpha = 1 is plain
fine-tuning, alpha = 0 the pretrained backbone under the fine-tuned new parts.

The paper interpolates a zero-shot model whose head is meaningful before fine-tuning; here the new
parts start from random weights, so interpolating them toward their initialisation makes no sense:
they keep their fine-tuned weights. Floating-point buffers of the backbone (BatchNorm running mean
and variance) are interpolated like its parameters; integer buffers (`num_batches_tracked`) keep
their fine-tuned values. The interpolation happens in place in `on_train_end`, so the final
validation point of the curve and the test metrics are the interpolated model's; earlier
validation points are the fine-tuned model's.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    backbone_and_head_groups,
    hookimpl,
    interpolate_weights,
    set_trainable,
    snapshot,
)


class WiseFTOptions(StrategyOptions):
    #: weight of the fine-tuned backbone: 1 = plain fine-tuning, 0 = the pretrained backbone
    alpha: Annotated[float, Field(ge=0, le=1)] = 0.5


class WiseFT(Strategy):
    """Fine-tune everything; then the backbone becomes (1 - alpha) x pretrained + alpha x fine-tuned."""

    name = "wise_ft"
    Options = WiseFTOptions
    options: WiseFTOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        self.start = snapshot(model.backbone)
        return backbone_and_head_groups(model)

    def on_train_end(self, model: TaskModel) -> None:
        interpolate_weights(model.backbone, self.start, self.options.alpha)
        del self.start  # the pretrained copy is not needed any more


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [WiseFT]

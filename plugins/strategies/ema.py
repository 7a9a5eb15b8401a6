"""`ema`: full fine-tuning; the model evaluated is an exponential moving average of the weights.

Polyak averaging with exponential weights (Polyak and Juditsky, 1992; as in Tan and Le's
EfficientNet recipe and timm's ModelEma). After every optimizer step (`on_step_end`) the average
moves toward the current weights, `ema <- decay_t * ema + (1 - decay_t) * w`, parameters and
floating-point buffers alike (BatchNorm running statistics: `AveragedModel(use_buffers=True)`);
integer buffers (`num_batches_tracked`) are copied. The first update copies the weights after the
first step (torch's `AveragedModel`). `on_train_end` returns the average, so the final validation
point and the test metrics are its; earlier validation points are the trained model's.

With `warmup` (the default) the decay of an update after k earlier ones (k >= 1: the first one is
the copy) is min(decay, (1 + k) / (10 + k)) (TensorFlow's `ExponentialMovingAverage` with
`num_updates`): early in a run the average follows the weights closely instead of staying near the
first steps' weights for ~1 / (1 - decay) steps, which with decay 0.999 would be most of a short
fine-tuning run. Without it every update uses `decay`
(exactly `torch.optim.swa_utils.get_ema_multi_avg_fn(decay)`).
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, backbone_and_head_groups, hookimpl, set_trainable


class EMAOptions(StrategyOptions):
    #: weight of the old average at each update (the average spans about 1 / (1 - decay) steps)
    decay: Annotated[float, Field(gt=0, lt=1)] = 0.999
    #: ramp the decay up as min(decay, (1 + k) / (10 + k)) at the update after k earlier ones
    warmup: bool = True


Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]


def ema_decay(decay: float, updates: int, warmup: bool) -> float:
    """The decay of the update that follows `updates` earlier ones (1 or more)."""
    return min(decay, (1 + updates) / (10 + updates)) if warmup else decay


class EMA(Strategy):
    """Fine-tune everything; evaluate the exponential moving average of the weights over the steps."""

    name = "ema"
    Options = EMAOptions
    options: EMAOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        self.updates = 0
        self.decay = self.options.decay
        self.average = AveragedModel(model, multi_avg_fn=self._update, use_buffers=True)
        self.average.requires_grad_(False)  # a copy that is never trained
        return backbone_and_head_groups(model)

    def _update(self, average: Tensors, current: Tensors, n_averaged: torch.Tensor | int) -> None:
        """One group of tensors (one device and dtype): the EMA of floating-point ones, a copy of the rest."""
        if average[0].is_floating_point():
            get_ema_multi_avg_fn(self.decay)(average, current, n_averaged)
        else:
            torch._foreach_copy_(list(average), list(current))

    def on_step_end(self, model: TaskModel, step: int) -> None:
        self.decay = ema_decay(self.options.decay, self.updates, self.options.warmup)
        self.average.update_parameters(model)
        self.updates += 1

    def on_train_end(self, model: TaskModel) -> TaskModel:
        module = self.average.module
        assert isinstance(module, TaskModel)
        return module


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [EMA]

"""Strategies as a third-party package would write them, importing only `harness`'s public API and torch.

`tp_wise_ft` (WiSE-FT, Wortsman et al., 2022) and `tp_swa` (SWA, Izmailov et al., 2018) use the
lifecycle's newer callbacks (`on_epoch_end`, `on_train_end`, opt-in `context`); `tp_legacy` is
written for the earlier API (`prepare(model)`, `extra_loss(model)`, `self.context`) and must keep
working unchanged. tests/test_third_party_lifecycle.py loads this module as a plugin.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, TrainingContext, hookimpl


class WiseFTOptions(StrategyOptions):
    #: the fine-tuned end's weight: 0 is the pretrained backbone, 1 plain fine-tuning
    alpha: float = 0.5


class WiseFT(Strategy):
    """Fine-tune everything; evaluate the backbone interpolated between its pretrained and fine-tuned weights."""

    name = "tp_wise_ft"
    Options = WiseFTOptions
    options: WiseFTOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        if not 0 <= self.options.alpha <= 1:
            raise ValueError(f"alpha = {self.options.alpha}, not in [0, 1]")
        self.pretrained = {k: v.clone() for k, v in model.backbone.state_dict().items()}
        model.requires_grad_(True)
        return [ParamGroup(params=list(model.parameters()), lr_scale=1.0, name="all")]

    def on_train_end(self, model: TaskModel) -> None:
        # the new parts have no pretrained end: they keep their fine-tuned weights
        for key, tuned in model.backbone.state_dict().items():  # tensors sharing the model's storage
            if tuned.is_floating_point():
                tuned.copy_(torch.lerp(self.pretrained[key], tuned, self.options.alpha))


class SWAOptions(StrategyOptions):
    #: how many of the last epochs' end-of-epoch weights are averaged
    epochs: int = 2


class SWA(Strategy):
    """Fine-tune everything; evaluate the average of the last epochs' weights, BatchNorm statistics recomputed."""

    name = "tp_swa"
    Options = SWAOptions
    options: SWAOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        self.sums, self.count = [torch.zeros_like(p) for p in model.parameters()], 0
        model.requires_grad_(True)
        return [ParamGroup(params=list(model.parameters()), lr_scale=1.0, name="all")]

    def on_epoch_end(
        self, model: TaskModel, epoch: int, context: TrainingContext, notes: dict[str, Any] | None = None
    ) -> None:
        if epoch >= context.epochs - self.options.epochs:
            self.count += 1
            if notes is not None:
                notes["averaged_epochs"] = self.count
            for total, parameter in zip(self.sums, model.parameters(), strict=True):
                total.add_(parameter.detach())

    @torch.no_grad()
    def on_train_end(self, model: TaskModel, context: TrainingContext) -> TaskModel:
        averaged = copy.deepcopy(model)
        for parameter, total in zip(averaged.parameters(), self.sums, strict=True):
            parameter.copy_(total / self.count)
            parameter.grad = None  # deepcopy copied the last step's
        # as torch.optim.swa_utils.update_bn: a cumulative average over one pass of the training data,
        # in the BatchNorm layers whose statistics the policy lets train
        averaged.train()
        self.train_mode(averaged)
        norms = [m for m in averaged.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None
        for batch in context.train_loader if norms else ():
            context.task.loss(averaged, context.task.to_device(batch, context.device))
        return averaged


class Legacy(Strategy):
    """Full fine-tuning written for the earlier API (fixed signatures, `self.context`), counting its callbacks."""

    name = "tp_legacy"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        self.counts = {"task": self.context.task.name, "epochs": 0, "extra_loss": 0}
        model.requires_grad_(True)
        return [ParamGroup(params=list(model.parameters()), lr_scale=1.0, name="all")]

    def on_epoch_start(self, model: TaskModel, epoch: int) -> None:
        self.counts["epochs"] += 1

    def extra_loss(self, model: TaskModel) -> torch.Tensor | None:
        self.counts["extra_loss"] += 1
        return None


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [WiseFT, SWA, Legacy]

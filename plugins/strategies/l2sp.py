"""`l2sp`: full fine-tuning with a penalty pulling the backbone toward its pretrained weights.

L2-SP (Li, Grandvalet and Davoine, 2018): Omega(w) = alpha/2 ||w_S - w_S^0||^2 + beta/2 ||w_new||^2,
with w_S the pretrained backbone's parameters, w_S^0 their starting values and w_new the
new parts. The penalty replaces weight decay, so the optimizer's weight decay is off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated

import torch
from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, backbone_and_head_groups, hookimpl, set_trainable


class L2SPOptions(StrategyOptions):
    alpha: Annotated[float, Field(ge=0)] = 0.1
    beta: Annotated[float, Field(ge=0)] = 0.01


def l2sp_penalty(
    backbone: Sequence[torch.Tensor],
    start: Sequence[torch.Tensor],
    new: Sequence[torch.Tensor],
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """alpha/2 * sum ||w - w0||^2 over the backbone + beta/2 * sum ||w||^2 over the new parts, in fp32."""
    to_start = sum(((w.float() - w0) ** 2).sum() for w, w0 in zip(backbone, start, strict=True))
    size = sum((w.float() ** 2).sum() for w in new)
    return 0.5 * alpha * torch.as_tensor(to_start) + 0.5 * beta * torch.as_tensor(size)


class L2SP(Strategy):
    """Fine-tune everything with an L2 penalty toward the pretrained backbone (and plain L2 on new parts)."""

    name = "l2sp"
    Options = L2SPOptions
    options: L2SPOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        self.backbone = list(model.backbone.parameters())
        self.start = [p.detach().float().clone() for p in self.backbone]
        self.new = list(model.head.parameters())
        return [replace(group, weight_decay=0.0) for group in backbone_and_head_groups(model)]

    def extra_loss(self, model: TaskModel) -> torch.Tensor:
        return l2sp_penalty(self.backbone, self.start, self.new, self.options.alpha, self.options.beta)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [L2SP]

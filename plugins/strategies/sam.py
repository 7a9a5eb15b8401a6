"""`sam`: sharpness-aware minimisation, full fine-tuning that seeks weights whose whole neighbourhood has a low loss.

SAM (Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
ICLR 2021). Each optimizer step takes two forward and backward passes: the gradient g at the
weights w gives the ascent step e = rho * g / ||g|| (over all trained parameters); the gradient at
w + e is the one the optimizer steps with, from w. With `adaptive` (ASAM, Kwon et al., ICML 2021)
the neighbourhood scales with each weight: e = rho * w^2 g / ||w g||.

The strategy owns the step through `take_step`: the loop still unscales (AMP), clips, steps the
optimizer through the grad scaler, and steps the schedule; its FLOPs, counted through
`take_step`, are twice full fine-tuning's. The second pass leaves BatchNorm running statistics as
the first pass left them (momentum 0 for that pass), as the reference implementation's
`disable_running_stats` does. e is scale-free, so the grad scaler's factor cancels; a first
gradient that overflowed (fp16) is not used to perturb, and the scaler skips that step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, backbone_and_head_groups, hookimpl, set_trainable


class SAMOptions(StrategyOptions):
    rho: float = Field(0.05, gt=0, le=10, description="radius of the neighbourhood the sharpest loss is sought in")
    adaptive: bool = Field(False, description="ASAM: the radius scaled by each weight's magnitude")


class SAM(Strategy):
    """Fine-tune everything, stepping with the gradient at the sharpest nearby weights (two passes a step)."""

    name = "sam"
    Options = SAMOptions
    options: SAMOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        return backbone_and_head_groups(model)

    def take_step(self, model: TaskModel, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        loss = closure()  # the gradients at w
        params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
        ascent = self.ascent(params)
        if ascent is None:
            return loss
        with torch.no_grad():
            for p, e in zip(params, ascent, strict=True):
                p.add_(e)
        with _statistics_kept(model):
            closure()  # the gradients at w + e: the ones the optimizer steps with
        with torch.no_grad():
            for p, e in zip(params, ascent, strict=True):
                p.sub_(e)
        return loss

    @torch.no_grad()
    def ascent(self, params: list[torch.nn.Parameter]) -> list[torch.Tensor] | None:
        """The step e from w to the neighbourhood's sharpest point; None when the gradient is 0 or not finite."""
        grads = [p.grad.float() * (p.abs() if self.options.adaptive else 1.0) for p in params]  # type: ignore[union-attr]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not torch.isfinite(norm) or norm == 0:
            return None
        factor = self.options.rho / (norm + 1e-12)
        return [
            ((p.abs() if self.options.adaptive else 1.0) * g * factor).to(p.dtype)
            for p, g in zip(params, grads, strict=True)
        ]


class _statistics_kept:
    """BatchNorm layers keep their running statistics through a block (momentum 0)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def __enter__(self) -> None:
        self.momenta = [m.momentum for m in self.norms]
        self.counts = [m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None for m in self.norms]
        for m in self.norms:
            m.momentum = 0.0

    def __exit__(self, *exc: object) -> None:
        for m, momentum, count in zip(self.norms, self.momenta, self.counts, strict=True):
            m.momentum = momentum
            if count is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(count)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [SAM]

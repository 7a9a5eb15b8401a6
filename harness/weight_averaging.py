"""Helpers for strategies that evaluate a combination of weights rather than the last ones.

- `snapshot(module)`: a copy of a module's floating-point parameters and buffers, by name
  (e.g. the pretrained weights at `prepare` time, to interpolate toward later);
- `interpolate_weights(module, start, alpha)`: in place, every floating-point parameter and buffer
  w of `module` becomes (1 - alpha) * start + alpha * w (`torch.lerp(start, w, alpha)`, exact at
  alpha 0 and 1); integer buffers (BatchNorm's `num_batches_tracked`) keep their current value
  (WiSE-FT, `wise_ft`);
- `recompute_batchnorm(model, task, loader, device)`: the BatchNorm running statistics of `model`
  recomputed from scratch over one pass of `loader`, with `torch.optim.swa_utils.update_bn`'s
  semantics (statistics reset, momentum None, i.e. a cumulative average over the batches, one pass
  in train mode, momenta and modes restored) but through the task's own loss, so that it works
  for every task kind (detection needs its targets in train mode) (SWA, `swa`);
- `batchnorm_layers(model)`: the model's BatchNorm layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from harness.components import Task, TaskModel

BatchNorm = nn.modules.batchnorm._BatchNorm


def _floating(module: nn.Module) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, tensor) of every floating-point parameter and buffer of `module` (persistent or not)."""
    for name, tensor in (*module.named_parameters(), *module.named_buffers()):
        if tensor.is_floating_point():
            yield name, tensor


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of `module`'s floating-point parameters and buffers, by name, on their device."""
    return {name: tensor.detach().clone() for name, tensor in _floating(module)}


@torch.no_grad()
def interpolate_weights(module: nn.Module, start: Mapping[str, torch.Tensor], alpha: float) -> None:
    """In place: each floating-point parameter and buffer w of `module` becomes `torch.lerp(start, w, alpha)`,
    i.e. (1 - alpha) * start + alpha * w; integer buffers are left as they are.

    `start` holds a tensor for every such name (as `snapshot` returns); a missing one is an error,
    not silently skipped.
    """
    missing = [name for name, _ in _floating(module) if name not in start]
    if missing:
        raise KeyError(f"no starting value for {', '.join(missing[:3])}")
    for name, tensor in _floating(module):
        begin = start[name].to(device=tensor.device, dtype=tensor.dtype)
        tensor.copy_(torch.lerp(begin, tensor, alpha))


def batchnorm_layers(model: nn.Module) -> list[BatchNorm]:
    return [m for m in model.modules() if isinstance(m, BatchNorm)]


@torch.no_grad()
def recompute_batchnorm(
    model: TaskModel,
    task: Task,
    loader: Iterable[Any],
    device: torch.device,
    *,
    layers: Iterable[BatchNorm] | None = None,
    autocast: Callable[[], AbstractContextManager[Any]] | None = None,
) -> int:
    """Recompute the running statistics of `layers` (default: every BatchNorm layer of `model`) over one pass
    of `loader`; returns the number of batches seen.

    As `torch.optim.swa_utils.update_bn`: the statistics are reset, each layer's momentum is None (the
    running statistics become the plain average of the per-batch statistics), the model runs in train
    mode, and the momenta and every module's mode are restored afterwards. The forward pass is
    `task.loss(model, task.to_device(batch, device))` without gradients, so a batch is whatever the
    task's loader yields. BatchNorm layers not in `layers` run in eval mode and keep their statistics.
    `autocast` (the cell's mixed precision, `TrainingContext.autocast`) wraps each forward pass.
    """
    chosen = batchnorm_layers(model) if layers is None else list(layers)
    if not chosen:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in chosen}
    batches = 0
    try:
        model.train()
        keep = set(chosen)
        for m in batchnorm_layers(model):
            if m not in keep:
                m.eval()
        for m in chosen:
            m.reset_running_stats()
            m.momentum = None
        for batch in loader:
            with autocast() if autocast is not None else nullcontext():
                task.loss(model, task.to_device(batch, device))
            batches += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for module, training in modes.items():
            module.training = training
    return batches

"""Measuring what a cell costs: peak memory, parameter counts, FLOPs per training sample."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from harness.devices import DeviceSetup

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(setup: DeviceSetup) -> None:
    """Start a fresh peak-memory window for the next cell."""
    if setup.is_cuda:
        torch.cuda.reset_peak_memory_stats(setup.device)
        return
    with contextlib.suppress(OSError):  # Linux: writing 5 resets the process's peak RSS (VmHWM)
        _CLEAR_REFS.write_text("5")


def peak_memory(setup: DeviceSetup) -> tuple[int, str]:
    """Peak bytes since the last reset, and what was measured."""
    if setup.is_cuda:
        return int(torch.cuda.max_memory_allocated(setup.device)), "cuda_max_allocated"
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024, "process_peak_rss"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process_peak_rss"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def flops_per_sample(step: Callable[[], torch.Tensor], batch_size: int) -> float | None:
    """FLOPs of one training step (forward + backward) per sample, as torch counts them.

    Operators torch cannot count (e.g. RoIAlign, NMS) are not included; None if counting fails.
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter:
            loss = step()
            loss.backward()
        return counter.get_total_flops() / max(batch_size, 1)
    except Exception:
        return None

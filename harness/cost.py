"""Measuring what a cell costs: peak memory, parameter counts, FLOPs per training sample."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from harness.devices import DeviceSetup

#: how often the CPU meter samples the resident size: short against a training step
SAMPLE_SECONDS = 0.002
_STATM = Path("/proc/self/statm")
_PAGE = resource.getpagesize()


def resident_bytes() -> int:
    """The process's resident memory now (Linux /proc/self/statm, else psutil, else 0)."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return 0


def _release_free_memory() -> None:
    """Hand freed heap back to the system (glibc), so a cell starts from what is alive, not from what
    an earlier cell freed: otherwise the next cell reuses those pages unseen and looks smaller."""
    gc.collect()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).malloc_trim(0)


class PeakMemory:
    """One cell's peak memory: CUDA max allocated since the cell started on a GPU; on the CPU the
    highest resident size above the cell's starting one, sampled by a background thread.

    `start()` opens the window, `stop()` closes it and returns (bytes, kind).
    """

    def __init__(self, setup: DeviceSetup, interval: float = SAMPLE_SECONDS) -> None:
        self.setup, self.interval = setup, interval
        self.baseline = self.highest = 0
        self._done = threading.Event()
        self._sampler: threading.Thread | None = None
        self._measured: tuple[int, str] | None = None

    def start(self) -> PeakMemory:
        if self.setup.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.setup.device)
            return self
        _release_free_memory()
        self.baseline = self.highest = resident_bytes()
        self._sampler = threading.Thread(target=self._sample, name="bench-peak-memory", daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            self.highest = max(self.highest, resident_bytes())

    def stop(self) -> tuple[int, str]:
        """Peak bytes of the window, and what was measured; the same answer when asked again."""
        if self._measured is None:
            if self.setup.is_cuda:
                self._measured = int(torch.cuda.max_memory_allocated(self.setup.device)), "cuda_max_allocated"
            else:
                self._done.set()
                if self._sampler is not None:
                    self._sampler.join()
                self.highest = max(self.highest, resident_bytes())
                self._measured = max(self.highest - self.baseline, 0), "cell_peak_rss"
        return self._measured

    def __enter__(self) -> PeakMemory:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


def flops_per_sample(step: Callable[[], torch.Tensor], batch_size: int, backward: bool = True) -> float | None:
    """FLOPs of one training step (forward + backward) per sample, as torch counts them; with
    `backward=False`, `step` back-propagates itself.

    Operators torch cannot count (e.g. RoIAlign, NMS) are not included; None if counting fails.
    """
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with counter:
            loss = step()
            if backward:
                loss.backward()
        return counter.get_total_flops() / max(batch_size, 1)
    except Exception:
        return None

"""One place decides the device and what goes with it (AMP, pinned memory, thread count)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from harness.errors import BenchError


@dataclass(frozen=True)
class DeviceSetup:
    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        return f"cpu ({usable_cores()} cores, {torch.get_num_threads()} threads)"

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16


def resolve_device(requested: str, amp: bool) -> DeviceSetup:
    """`auto` picks CUDA when present, else the CPU.

    AMP (training only) is float16 with a gradient scaler, as torchvision's reference scripts
    train: bfloat16 keeps 8 bits of mantissa, too few for box coordinates in detection.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device {requested!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise BenchError("device 'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    device = torch.device(requested)
    amp_dtype = None
    if amp and device.type == "cuda":
        amp_dtype = torch.float16
    return DeviceSetup(device, amp_dtype)


def usable_cores() -> int:
    """Cores this process may run on (its affinity), not the host's count: more threads than that thrash."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set the CPU thread count explicitly (default: every usable core), so timings are comparable."""
    count = threads or usable_cores()
    torch.set_num_threads(count)
    return count


@contextlib.contextmanager
def synchronized(setup: DeviceSetup) -> Iterator[None]:
    """Make timings include queued device work."""
    if setup.is_cuda:
        torch.cuda.synchronize(setup.device)
    yield
    if setup.is_cuda:
        torch.cuda.synchronize(setup.device)

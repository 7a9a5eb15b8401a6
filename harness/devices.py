"""One place decides the device and what goes with it (AMP, memory format, compile, cuDNN, determinism,
pinned memory, thread count)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch

from harness.errors import BenchError
from harness.settings import Training


class KindDefaults(Protocol):
    """What the device settings read of a task (`harness.Task`): its kind's precision and memory format."""

    preferred_amp: ClassVar[Literal["bf16", "fp16"]]
    channels_last: ClassVar[bool]


@dataclass(frozen=True)
class DeviceSetup:
    """The device and the speed settings resolved for it; `Training` says what was asked."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None: full precision
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    deterministic: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def name(self) -> str:
        if self.is_cuda:
            return torch.cuda.get_device_name(self.device)
        cores, threads = usable_cores(), torch.get_num_threads()
        return f"cpu ({cores} {'core' if cores == 1 else 'cores'}, {threads} {'thread' if threads == 1 else 'threads'})"

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def needs_grad_scaler(self) -> bool:
        return self.amp_dtype == torch.float16

    @property
    def precision(self) -> str:
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.amp_dtype, "fp32")  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        """What ran, for the provenance: the settings as resolved on this device."""
        return {
            "precision": self.precision,
            "channels_last": self.channels_last,
            "compile": self.compile,
            "cudnn_benchmark": self.cudnn_benchmark,
            "deterministic": self.deterministic,
        }


def resolve_device(requested: str, amp: bool | str = False, *, task: KindDefaults | None = None) -> DeviceSetup:
    """`auto` picks CUDA when present, else the CPU; `amp` is resolved for that device and task.

    `amp = "auto"` (or true) on CUDA: the task's `preferred_amp` where the GPU has bfloat16
    (classification and segmentation: bfloat16, fp32's range and no gradient scaler; detection:
    float16 with a gradient scaler, as torchvision's reference scripts train it), and float16 on
    GPUs without bfloat16. On the CPU `auto` is full precision; `fp16` and `bf16` are honoured
    wherever torch's autocast takes them.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"device {requested!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise BenchError("device 'mps' requested but MPS is not available; use 'auto' or 'cpu'")
    device = torch.device(requested)
    return DeviceSetup(device, _amp_dtype(device, amp, task))


def _amp_dtype(device: torch.device, amp: bool | str, task: KindDefaults | None) -> torch.dtype | None:
    if amp is False:
        return None
    cuda = device.type == "cuda"
    if amp in ("auto", True):
        if not cuda:
            return None
        bf16 = task is not None and task.preferred_amp == "bf16" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    if cuda and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise BenchError(f"training.amp: {torch.cuda.get_device_name(device)} has no bfloat16; use 'fp16' or 'auto'")
    return dtype


def setup_for(requested: str, training: Training, task: KindDefaults) -> DeviceSetup:
    """The device and every speed setting of a cell, `auto` resolved for the device and the task."""
    setup = resolve_device(requested, training.amp, task=task)
    cuda = setup.is_cuda

    def decide(value: bool | str, default: bool) -> bool:
        return default if value == "auto" else bool(value)

    return dataclasses.replace(
        setup,
        channels_last=decide(training.channels_last, cuda and task.channels_last),
        compile=training.compile,
        # kernel timing picks nondeterministic kernels too, so deterministic runs go without it
        cudnn_benchmark=decide(training.cudnn_benchmark, cuda and not training.deterministic),
        deterministic=training.deterministic,
    )


#: the message torch gives for an operation without a deterministic implementation (warn_only)
_NONDETERMINISTIC = re.compile(r"^(\S+) does not have a deterministic implementation")


@contextlib.contextmanager
def execution_settings(setup: DeviceSetup, found: list[str]) -> Iterator[None]:
    """Apply the process-wide settings of `setup` for one cell and restore them after it.

    With `deterministic`, torch's deterministic algorithms are on in warn-only mode: an operation
    that has none still runs, and its name is appended to `found` (the provenance lists them).
    """
    benchmark, cudnn_deterministic = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    algorithms = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.backends.cudnn.benchmark = setup.cudnn_benchmark
    torch.backends.cudnn.deterministic = setup.deterministic
    if setup.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        if not setup.deterministic:
            yield
            return
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            try:
                yield
            finally:
                for warning in said:
                    match = _NONDETERMINISTIC.match(str(warning.message))
                    if match is None:
                        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
                    elif match.group(1) not in found:
                        found.append(match.group(1))
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, cudnn_deterministic
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)


def usable_cores() -> int:
    """Cores this process may run on (its affinity), not the host's count: more threads than that thrash."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The host's 1-minute load average (runnable processes), None where the OS does not say."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


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

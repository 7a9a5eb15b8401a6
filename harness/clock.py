"""The training loop's timing bookkeeping: what a cell's training and evaluation cost in seconds.

Kept apart from the loop so the loop stays a plain loop. The clock measures training time per
epoch, the time spent waiting for batches, and a throughput window that opens after the warm-up
steps (the allocator, kernel selection and compilation happen before it), and keeps the first
compiled step's extra time out of the training seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.timing import warmup_steps


class LoopClock:
    """Seconds of one run of the loop; `sync` waits for queued device work (a no-op on the CPU)."""

    def __init__(
        self, total_steps: int, sync: Callable[[], None], compile: bool, train_seconds: float, eval_seconds: float
    ) -> None:
        self.sync, self.compile = sync, compile
        self.warmup = warmup_steps(total_steps)
        if compile and total_steps > 1:
            self.warmup = max(self.warmup, 1)  # the compiling step never counts toward the throughput
        #: work done before the loop that counts as training or evaluation (computing cached features)
        self.before_train = train_seconds
        self.train_seconds, self.eval_seconds = train_seconds, eval_seconds
        self.data_wait_seconds = 0.0
        self.measured_seconds = self.measured_samples = 0.0
        self.window = self.window_wait = self.first_step_seconds = 0.0
        self.epoch_started = self.step_started = 0.0

    def start_epoch(self) -> None:
        self.sync()
        self.epoch_started = time.perf_counter()

    def next_batch(self, batches: Iterator[Any], ready: Callable[[Any], Any]) -> Any:
        """The next batch made `ready` (moved to the device), the wait counted; None at the end."""
        waiting = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            return None
        batch = ready(batch)
        self.step_started = time.perf_counter()
        self.data_wait_seconds += self.step_started - waiting
        return batch

    def before_step(self, step: int) -> None:
        if step == self.warmup:  # the throughput window opens: what was queued belongs to the warm-up
            self.sync()
            self.window, self.window_wait = time.perf_counter(), self.data_wait_seconds

    def after_step(self, step: int, samples: int) -> None:
        """Step `step` (0-based) of `samples` samples is done."""
        if step == 0 and self.compile:
            self.sync()
            self.first_step_seconds = time.perf_counter() - self.step_started
        if step + 1 > self.warmup:
            self.measured_samples += samples

    def end_epoch(self, steps_done: int) -> None:
        """The epoch's training is over (device work included), `steps_done` steps in all."""
        self.sync()
        ended = time.perf_counter()
        self.train_seconds += ended - self.epoch_started
        if steps_done > self.warmup:  # the window's part of this epoch, data wait excluded
            opened = max(self.epoch_started, self.window)
            self.measured_seconds += ended - opened - (self.data_wait_seconds - self.window_wait)
            self.window, self.window_wait = ended, self.data_wait_seconds

    def evaluation(self) -> _Timed:
        """A block whose seconds (device work included) count as evaluation."""
        return _Timed(self)

    def compile_seconds(self, steps: int) -> float:
        """The first compiled step's time beyond an ordinary step's, taken out of the training seconds."""
        if not self.compile or steps <= 1:
            return 0.0
        ordinary = (self.train_seconds - self.before_train - self.first_step_seconds) / (steps - 1)
        extra = max(0.0, self.first_step_seconds - ordinary)
        self.train_seconds -= extra
        return extra

    def samples_per_second(self, samples: int) -> float:
        """Training samples per second after the warm-up steps, data wait excluded."""
        if self.measured_samples and self.measured_seconds > 0:
            return self.measured_samples / self.measured_seconds
        if self.train_seconds > 0:
            return samples / max(self.train_seconds - self.data_wait_seconds, 1e-9)
        return 0.0


class _Timed:
    def __init__(self, clock: LoopClock) -> None:
        self.clock = clock

    def __enter__(self) -> None:
        self.clock.sync()
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.clock.sync()
        self.clock.eval_seconds += time.perf_counter() - self.started

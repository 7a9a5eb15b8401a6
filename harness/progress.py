"""Progress of a suite run on stderr: rich bars for suite, cell and epoch, or quiet log lines."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from harness.cell import Cell
    from harness.result import CellResult


class Observer:
    """What the runner tells about its progress; this base class ignores all of it.

    Events of a cell come from the slot that runs it (`slot(n)`): several run at once under a
    parallel executor, each with its own view.
    """

    def suite_started(self, total: int, done: int) -> None: ...
    def slot(self, index: int) -> Observer:
        """The view of executor slot `index` (this observer itself when there is one slot)."""
        return self

    def cell_started(self, cell: Cell, epochs: int) -> None: ...
    def epoch_started(self, epoch: int, steps: int) -> None: ...
    def step(self, loss: float, steps: int = 1) -> None:
        """`steps` optimizer steps done (events from other processes arrive batched), the last one's loss."""

    def epoch_finished(self, epoch: int, val: dict[str, float | None]) -> None: ...
    def cell_finished(self, result: CellResult) -> None: ...
    def pretrain_finished(self, result: CellResult) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


def _summary(result: CellResult) -> str:
    if result.status == "ok":
        metric = result.settings["task"]["metric"]
        value = result.metrics.get(metric)
        shown = f"{metric}={value:.4f}" if value is not None else ""
        return f"ok {shown} ({result.cost.wall_seconds:.1f}s)"
    return f"{result.status}: {result.reason}"


class QuietObserver(Observer):
    """One line per finished cell, for logs and CI."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.total = 0
        self.count = 0

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    def suite_started(self, total: int, done: int) -> None:
        self.total, self.count = total, done
        if done:
            self._line(f"{done} of {total} cells already done, skipping them")

    def cell_finished(self, result: CellResult) -> None:
        self.count += 1
        self._line(f"[{self.count}/{self.total}] {result.label}: {_summary(result)}")

    def pretrain_finished(self, result: CellResult) -> None:
        self._line(f"{result.task} / {result.backbone}: {_summary(result)}")

    def message(self, text: str) -> None:
        self._line(text)


class RichObserver(QuietObserver):
    """Live bars: the suite (cells), and per executor slot the running cell (epochs) and its epoch (steps)."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(console or Console(file=sys.stderr))
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.suite_bar = self.progress.add_task("suite", total=1, info="")
        self.views: dict[int, _SlotBars] = {}
        self.failed = 0

    def suite_started(self, total: int, done: int) -> None:
        super().suite_started(total, done)
        self.progress.update(self.suite_bar, total=total, completed=done)

    def slot(self, index: int) -> Observer:
        if index not in self.views:
            self.views[index] = _SlotBars(self, index)
        return self.views[index]

    def _running_changed(self) -> None:
        running = sum(view.cell_bar is not None for view in self.views.values())
        failed = f", {self.failed} failed" if self.failed else ""
        self.progress.update(self.suite_bar, info=f"{running} running{failed}")

    # a single-slot caller (tests, `harness.testing`) may use the observer directly: slot 0
    def cell_started(self, cell: Cell, epochs: int) -> None:
        self.slot(0).cell_started(cell, epochs)

    def epoch_started(self, epoch: int, steps: int) -> None:
        self.slot(0).epoch_started(epoch, steps)

    def step(self, loss: float, steps: int = 1) -> None:
        self.slot(0).step(loss, steps)

    def epoch_finished(self, epoch: int, val: dict[str, float | None]) -> None:
        self.slot(0).epoch_finished(epoch, val)

    def cell_finished(self, result: CellResult) -> None:
        self.slot(0).cell_finished(result)

    def pretrain_finished(self, result: CellResult) -> None:
        self.slot(0).pretrain_finished(result)

    def close(self) -> None:
        for view in self.views.values():
            view.drop()
        self.progress.stop()


class _SlotBars(Observer):
    """One slot's bars: its running cell (epochs) and that cell's current epoch (steps)."""

    def __init__(self, owner: RichObserver, index: int) -> None:
        self.owner, self.index = owner, index
        self.cell_bar: Any = None
        self.epoch_bar: Any = None

    @property
    def progress(self) -> Progress:
        return self.owner.progress

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self.drop()
        where = f"[{self.index}] " if len(self.owner.views) > 1 else ""
        self.cell_bar = self.progress.add_task(f"  {where}{escape(cell.label)}", total=epochs, info="")
        self.owner._running_changed()

    def epoch_started(self, epoch: int, steps: int) -> None:
        if self.epoch_bar is not None:
            self.progress.remove_task(self.epoch_bar)
        self.epoch_bar = self.progress.add_task(f"    epoch {epoch + 1}", total=steps, info="")

    def step(self, loss: float, steps: int = 1) -> None:
        if self.epoch_bar is not None:
            self.progress.update(self.epoch_bar, advance=steps, info=f"loss {loss:.4f}")

    def epoch_finished(self, epoch: int, val: dict[str, float | None]) -> None:
        if self.cell_bar is not None:
            shown = " ".join(f"{k}={'-' if v is None else f'{v:.3f}'}" for k, v in list(val.items())[:2])
            self.progress.update(self.cell_bar, advance=1, info=shown)

    def cell_finished(self, result: CellResult) -> None:
        self.drop()
        self.owner.failed += result.status in ("failed", "diverged")
        self.progress.update(self.owner.suite_bar, advance=1)
        QuietObserver.cell_finished(self.owner, result)
        self.owner._running_changed()

    def pretrain_finished(self, result: CellResult) -> None:
        self.drop()
        QuietObserver.pretrain_finished(self.owner, result)
        self.owner._running_changed()

    def message(self, text: str) -> None:
        self.owner.message(text)

    def drop(self) -> None:
        for bar in (self.epoch_bar, self.cell_bar):
            if bar is not None:
                self.progress.remove_task(bar)
        self.cell_bar = self.epoch_bar = None


class Forwarding(Observer):
    """A worker process's observer: sends each event through `send` to the driver's slot view.

    Step events are batched to at most one per `interval` seconds, so a fast loop is not slowed.
    """

    def __init__(self, send: Any, interval: float = 0.2) -> None:
        self.send, self.interval = send, interval
        self.pending_steps, self.last, self.loss = 0, 0.0, 0.0

    def _forward(self, name: str, *args: Any) -> None:
        with contextlib.suppress(OSError):  # a driver that died must not fail the cell
            self.send(("event", name, args))

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self._forward("cell_started", cell, epochs)

    def epoch_started(self, epoch: int, steps: int) -> None:
        self._flush()
        self._forward("epoch_started", epoch, steps)

    def step(self, loss: float, steps: int = 1) -> None:
        self.pending_steps += steps
        self.loss = loss
        now = time.monotonic()
        if now - self.last >= self.interval:
            self._flush()
            self.last = now

    def _flush(self) -> None:
        if self.pending_steps:
            self._forward("step", self.loss, self.pending_steps)
            self.pending_steps = 0

    def epoch_finished(self, epoch: int, val: dict[str, float | None]) -> None:
        self._flush()
        self._forward("epoch_finished", epoch, val)

    def message(self, text: str) -> None:
        self._forward("message", text)


def deliver(observer: Observer, slot: int, event: tuple[str, tuple[Any, ...]]) -> None:
    """Replay an event a `Forwarding` observer sent, on the driver's view of `slot`."""
    name, args = event
    getattr(observer.slot(slot), name)(*args)

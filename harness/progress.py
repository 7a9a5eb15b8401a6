"""Run events: their transport from a training loop to the driver, and the progress display on stderr
(rich bars for suite, cell and epoch, or quiet log lines), a plugin on those events as any logger is."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from dataclasses import replace
from typing import Any

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

from harness.cell import Cell
from harness.events import CellEvent, CellStarted, Event, Observer, Step
from harness.hookspecs import hookimpl
from harness.result import CellResult


class HookRelay(Observer):
    """The driver's end of the transport: each event becomes a call of its `bench_*` hook."""

    def __init__(self, hook: Any, also: Observer | None = None) -> None:
        self.hook, self.also = hook, also
        self.views: dict[int, _SlotRelay] = {}
        self.failed: set[tuple[str, str]] = set()

    def emit(self, event: Event) -> None:
        """Call each implementation of the event's hook on its own, in pluggy's order (last registered first).

        pluggy's own call stops at the first implementation that raises, so one logger's bug would
        hide the event from the progress display and every other logger. Here a failing
        implementation is reported once per plugin and hook, and the others still get the event;
        it never fails a cell.
        """
        name, arguments = event.hook, event.arguments()
        for implementation in reversed(getattr(self.hook, name).get_hookimpls()):
            try:
                implementation.function(**{arg: arguments[arg] for arg in implementation.argnames})
            except Exception as exc:
                if (implementation.plugin_name, name) in self.failed:
                    continue
                self.failed.add((implementation.plugin_name, name))
                text = (
                    f"plugin {implementation.plugin_name!r} failed in {name} ({type(exc).__name__}: {exc}); "
                    "the other plugins still get every event, the run goes on, results are kept"
                )
                warnings.warn(text, RuntimeWarning, stacklevel=2)
        if self.also is not None and not isinstance(event, CellEvent):
            self.also.emit(event)

    def slot(self, index: int) -> Observer:
        if index not in self.views:
            self.views[index] = _SlotRelay(self, index)
        return self.views[index]


class _SlotRelay(Observer):
    """One slot's view: its events carry the slot's index and the cell it is running."""

    def __init__(self, relay: HookRelay, index: int) -> None:
        self.relay, self.index = relay, index
        self.cell: Cell | None = None
        self.also = relay.also.slot(index) if relay.also is not None else None

    def emit(self, event: Event) -> None:
        if not isinstance(event, CellEvent):
            self.relay.emit(event)
            return
        if isinstance(event, CellStarted):
            self.cell = event.cell
        self.relay.emit(event.placed(event.cell or self.cell, self.index))
        if self.also is not None:
            self.also.emit(event)


def _summary(result: CellResult) -> str:
    if result.status == "ok":
        metric = result.settings["task"]["metric"]
        value = result.metrics.get(metric)
        shown = f"{metric}={value:.4f}" if value is not None else ""
        return f"ok {shown} ({result.cost.wall_seconds:.1f}s)"
    return f"{result.status}: {result.reason}"


class QuietProgress:
    """The progress display for logs and CI, a plugin on the run events: one line per finished cell."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.total = 0
        self.count = 0

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, soft_wrap=True)

    @hookimpl
    def bench_run_started(self, cells: list[Cell], done: int, searched: int) -> None:
        self.total, self.count = len(cells) + searched, done
        if done:
            self._line(f"{done} of {self.total} cells already done, skipping them")

    @hookimpl
    def bench_cell_finished(self, cell: Cell, result: CellResult, slot: int = 0) -> None:
        if cell.is_pretraining:
            self._line(f"{result.task} / {result.backbone}: {_summary(result)}")
            return
        self.count += 1
        self._line(f"[{self.count}/{self.total}] {result.label}: {_summary(result)}")

    @hookimpl
    def bench_message(self, text: str) -> None:
        self._line(text)

    def close(self) -> None: ...


class RichProgress(QuietProgress):
    """Live bars on the run events: the suite (cells), and per executor slot the running cell
    (epochs) and its epoch (steps), each with its ETA."""

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

    def _view(self, slot: int) -> _SlotBars:
        if slot not in self.views:
            self.views[slot] = _SlotBars(self, slot)
        return self.views[slot]

    def _running_changed(self) -> None:
        running = sum(view.cell_bar is not None for view in self.views.values())
        failed = f", {self.failed} failed" if self.failed else ""
        self.progress.update(self.suite_bar, info=f"{running} running{failed}")

    @hookimpl
    def bench_run_started(self, cells: list[Cell], done: int, searched: int) -> None:
        super().bench_run_started(cells, done, searched)
        self.progress.update(self.suite_bar, total=self.total, completed=done)

    @hookimpl
    def bench_cell_started(self, cell: Cell, slot: int, epochs: int) -> None:
        self._view(slot).cell_started(cell, epochs)

    @hookimpl
    def bench_epoch_started(self, slot: int, epoch: int, steps: int, epochs: int) -> None:
        self._view(slot).epoch_started(epoch, steps, epochs)

    @hookimpl
    def bench_step(self, slot: int, steps: int, loss: float) -> None:
        self._view(slot).step(loss, steps)

    @hookimpl
    def bench_epoch_finished(self, slot: int, val: dict[str, float | None]) -> None:
        self._view(slot).epoch_finished(val)

    @hookimpl
    def bench_cell_finished(self, cell: Cell, result: CellResult, slot: int = 0) -> None:
        self._view(slot).drop()
        if not cell.is_pretraining:
            self.failed += result.status in ("failed", "diverged")
            self.progress.update(self.suite_bar, advance=1)
        super().bench_cell_finished(cell, result, slot)
        self._running_changed()

    def close(self) -> None:
        for view in self.views.values():
            view.drop()
        self.progress.stop()


class _SlotBars:
    """One slot's bars: its running cell (epochs) and that cell's current epoch (steps)."""

    def __init__(self, owner: RichProgress, index: int) -> None:
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

    def epoch_started(self, epoch: int, steps: int, epochs: int) -> None:
        if self.cell_bar is not None and epochs:
            self.progress.update(self.cell_bar, total=epochs)
        if self.epoch_bar is not None:
            self.progress.remove_task(self.epoch_bar)
        self.epoch_bar = self.progress.add_task(f"    epoch {epoch + 1}", total=steps, info="")

    def step(self, loss: float, steps: int) -> None:
        if self.epoch_bar is not None:
            self.progress.update(self.epoch_bar, advance=steps, info=f"loss {loss:.4f}")

    def epoch_finished(self, val: dict[str, float | None]) -> None:
        if self.cell_bar is not None:
            shown = " ".join(f"{k}={'-' if v is None else f'{v:.3f}'}" for k, v in list(val.items())[:2])
            self.progress.update(self.cell_bar, advance=1, info=shown)

    def drop(self) -> None:
        for bar in (self.epoch_bar, self.cell_bar):
            if bar is not None:
                self.progress.remove_task(bar)
        self.cell_bar = self.epoch_bar = None


class Forwarding(Observer):
    """A worker process's observer: sends each event object through `send` to the driver's slot view.

    Step events are merged to at most one per `interval` seconds, so a fast loop is not slowed.
    """

    def __init__(self, send: Any, interval: float = 0.2) -> None:
        self.send, self.interval = send, interval
        self.pending: Step | None = None
        self.last = 0.0

    def _forward(self, event: Event) -> None:
        with contextlib.suppress(OSError):  # a driver that died must not fail the cell
            self.send(("event", event))

    def emit(self, event: Event) -> None:
        if isinstance(event, Step):
            steps = event.steps + (self.pending.steps if self.pending is not None else 0)
            self.pending = replace(event, steps=steps)
            now = time.monotonic()
            if now - self.last >= self.interval:
                self._flush()
                self.last = now
            return
        self._flush()
        self._forward(event)

    def _flush(self) -> None:
        if self.pending is not None:
            self._forward(self.pending)
            self.pending = None


def deliver(observer: Observer, slot: int, event: Event) -> None:
    """Replay an event a `Forwarding` observer sent, on the driver's view of `slot`."""
    observer.slot(slot).emit(event)

"""Run events: their transport from a training loop to the driver, and the progress display on stderr
(rich bars for suite, cell and epoch, or quiet log lines), a plugin on those events as any logger is."""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
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

from harness.hookspecs import hookimpl

if TYPE_CHECKING:
    from harness.cell import Cell
    from harness.result import CellResult


class Observer:
    """How training reports progress to the process that runs the suite; this base ignores all of it.

    It is the transport of the run events: a worker process forwards them (`Forwarding`), and in
    the driver `HookRelay` turns them into the `bench_*` event hooks that the progress display
    and the loggers implement. Events of a cell come from the executor slot that runs it (`slot(n)`).
    """

    def slot(self, index: int) -> Observer:
        """The view of executor slot `index` (this observer itself when there is one slot)."""
        return self

    def cell_started(self, cell: Cell, epochs: int) -> None:
        """`cell` starts running; `epochs`: the suite's setting (`max_steps` may cut it: see `epoch_started`)."""

    def epoch_started(self, epoch: int, steps: int, *, epochs: int = 0) -> None:
        """Epoch `epoch` of `epochs` starts; it takes `steps` optimizer steps."""

    def step(
        self, loss: float, steps: int = 1, *, step: int = 0, lr: float = 0.0, samples_per_second: float = 0.0
    ) -> None:
        """`steps` optimizer steps done since the last event, up to `step`; `loss`: the epoch's running mean."""

    def epoch_finished(
        self, epoch: int, val: dict[str, float | None], *, train_loss: float | None = None, step: int = 0
    ) -> None: ...
    def message(self, text: str) -> None: ...
    def close(self) -> None: ...


class HookRelay(Observer):
    """The driver's end of the transport: each event becomes a call of its `bench_*` hook."""

    def __init__(self, hook: Any, also: Observer | None = None) -> None:
        self.hook, self.also = hook, also
        self.views: dict[int, _SlotRelay] = {}
        self.failed: set[tuple[str, str]] = set()

    def emit(self, name: str, **arguments: Any) -> None:
        """Call each implementation of hook `name` on its own, in pluggy's order (last registered first).

        pluggy's own call stops at the first implementation that raises, so one logger's bug would
        hide the event from the progress display and every other logger. Here a failing
        implementation is reported once per plugin and hook, and the others still get the event;
        it never fails a cell.
        """
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

    def slot(self, index: int) -> Observer:
        if index not in self.views:
            self.views[index] = _SlotRelay(self, index)
        return self.views[index]

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self.slot(0).cell_started(cell, epochs)

    def epoch_started(self, epoch: int, steps: int, *, epochs: int = 0) -> None:
        self.slot(0).epoch_started(epoch, steps, epochs=epochs)

    def step(self, loss: float, steps: int = 1, **info: Any) -> None:
        self.slot(0).step(loss, steps, **info)

    def epoch_finished(self, epoch: int, val: dict[str, float | None], **info: Any) -> None:
        self.slot(0).epoch_finished(epoch, val, **info)

    def message(self, text: str) -> None:
        self.emit("bench_message", text=text)
        if self.also is not None:
            self.also.message(text)


class _SlotRelay(Observer):
    """One slot's events, with the cell it is running."""

    def __init__(self, relay: HookRelay, index: int) -> None:
        self.relay, self.index = relay, index
        self.emit = relay.emit
        self.cell: Cell | None = None
        self.also = relay.also.slot(index) if relay.also is not None else None

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self.cell = cell
        self.emit("bench_cell_started", cell=cell, slot=self.index, epochs=epochs)
        if self.also is not None:
            self.also.cell_started(cell, epochs)

    def epoch_started(self, epoch: int, steps: int, *, epochs: int = 0) -> None:
        self.emit("bench_epoch_started", cell=self.cell, slot=self.index, epoch=epoch, steps=steps, epochs=epochs)
        if self.also is not None:
            self.also.epoch_started(epoch, steps, epochs=epochs)

    def step(
        self, loss: float, steps: int = 1, *, step: int = 0, lr: float = 0.0, samples_per_second: float = 0.0
    ) -> None:
        self.emit(
            "bench_step", cell=self.cell, slot=self.index, step=step, steps=steps, loss=loss, lr=lr,
            samples_per_second=samples_per_second,
        )  # fmt: skip
        if self.also is not None:
            self.also.step(loss, steps, step=step, lr=lr, samples_per_second=samples_per_second)

    def epoch_finished(
        self, epoch: int, val: dict[str, float | None], *, train_loss: float | None = None, step: int = 0
    ) -> None:
        self.emit(
            "bench_epoch_finished",
            cell=self.cell,
            slot=self.index,
            epoch=epoch,
            step=step,
            train_loss=train_loss,
            val=val,
        )
        if self.also is not None:
            self.also.epoch_finished(epoch, val, train_loss=train_loss, step=step)

    def message(self, text: str) -> None:
        self.relay.message(text)


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
    def bench_run_started(self, cells: list[Cell], done: int) -> None:
        self.total, self.count = len(cells), done
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
    def bench_run_started(self, cells: list[Cell], done: int) -> None:
        super().bench_run_started(cells, done)
        self.progress.update(self.suite_bar, total=len(cells), completed=done)

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
    """A worker process's observer: sends each event through `send` to the driver's slot view.

    Step events are batched to at most one per `interval` seconds, so a fast loop is not slowed.
    """

    def __init__(self, send: Any, interval: float = 0.2) -> None:
        self.send, self.interval = send, interval
        self.pending_steps, self.last, self.loss = 0, 0.0, 0.0
        self.info: dict[str, Any] = {}

    def _forward(self, name: str, *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(OSError):  # a driver that died must not fail the cell
            self.send(("event", name, args, kwargs))

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self._forward("cell_started", cell, epochs)

    def epoch_started(self, epoch: int, steps: int, *, epochs: int = 0) -> None:
        self._flush()
        self._forward("epoch_started", epoch, steps, epochs=epochs)

    def step(self, loss: float, steps: int = 1, **info: Any) -> None:
        self.pending_steps += steps
        self.loss, self.info = loss, info
        now = time.monotonic()
        if now - self.last >= self.interval:
            self._flush()
            self.last = now

    def _flush(self) -> None:
        if self.pending_steps:
            self._forward("step", self.loss, self.pending_steps, **self.info)
            self.pending_steps = 0

    def epoch_finished(self, epoch: int, val: dict[str, float | None], **info: Any) -> None:
        self._flush()
        self._forward("epoch_finished", epoch, val, **info)

    def message(self, text: str) -> None:
        self._forward("message", text)


def deliver(observer: Observer, slot: int, event: tuple[Any, ...]) -> None:
    """Replay an event a `Forwarding` observer sent, on the driver's view of `slot`."""
    name, args, kwargs = event
    getattr(observer.slot(slot), name)(*args, **kwargs)

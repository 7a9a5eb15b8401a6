"""Progress of a suite run on stderr: rich bars for suite, cell and epoch, or quiet log lines."""

from __future__ import annotations

import sys
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
    """What the runner tells about its progress; this base class ignores all of it."""

    def suite_started(self, total: int, done: int) -> None: ...
    def cell_started(self, cell: Cell, epochs: int) -> None: ...
    def epoch_started(self, epoch: int, steps: int) -> None: ...
    def step(self, loss: float) -> None: ...
    def epoch_finished(self, epoch: int, val: dict[str, float]) -> None: ...
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
    """Three live bars: the suite (cells), the current cell (epochs), the current epoch (steps)."""

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
        self.cell_bar: Any = None
        self.epoch_bar: Any = None

    def suite_started(self, total: int, done: int) -> None:
        super().suite_started(total, done)
        self.progress.update(self.suite_bar, total=total, completed=done)

    def cell_started(self, cell: Cell, epochs: int) -> None:
        self._drop_cell_bars()
        self.cell_bar = self.progress.add_task(f"  {escape(cell.label)}", total=epochs, info="")

    def epoch_started(self, epoch: int, steps: int) -> None:
        if self.epoch_bar is not None:
            self.progress.remove_task(self.epoch_bar)
        self.epoch_bar = self.progress.add_task(f"    epoch {epoch + 1}", total=steps, info="")

    def step(self, loss: float) -> None:
        if self.epoch_bar is not None:
            self.progress.update(self.epoch_bar, advance=1, info=f"loss {loss:.4f}")

    def epoch_finished(self, epoch: int, val: dict[str, float]) -> None:
        if self.cell_bar is not None:
            shown = " ".join(f"{k}={v:.3f}" for k, v in list(val.items())[:2])
            self.progress.update(self.cell_bar, advance=1, info=shown)

    def cell_finished(self, result: CellResult) -> None:
        self._drop_cell_bars()
        self.progress.update(self.suite_bar, advance=1)
        super().cell_finished(result)

    def pretrain_finished(self, result: CellResult) -> None:
        self._drop_cell_bars()
        super().pretrain_finished(result)

    def _drop_cell_bars(self) -> None:
        for bar in (self.epoch_bar, self.cell_bar):
            if bar is not None:
                self.progress.remove_task(bar)
        self.cell_bar = self.epoch_bar = None

    def close(self) -> None:
        self._drop_cell_bars()
        self.progress.stop()

"""The hooks a `bench` plugin can implement.

Registration hooks return component classes; the harness collects them into one registry
and refuses two components of one kind with the same name. Event hooks let a plugin observe
a run (a logger, a dashboard). Specs only ever grow by new optional arguments, so a plugin
written today keeps working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from harness.cell import Cell
    from harness.components import Backbone, Dataset, Executor, Logger, Reporter, Strategy, Task
    from harness.result import CellResult, RunSummary
    from harness.settings import Suite

PROJECT = "bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- components ----------------------------------------------------------------------------


@hookspec
def bench_backbones() -> list[type[Backbone]]:
    """Backbone architectures this plugin provides."""


@hookspec
def bench_tasks() -> list[type[Task]]:
    """Task kinds (classification, detection, ...) this plugin provides."""


@hookspec
def bench_datasets() -> list[type[Dataset]]:
    """Datasets this plugin provides."""


@hookspec
def bench_strategies() -> list[type[Strategy]]:
    """Fine-tuning strategies this plugin provides."""


@hookspec
def bench_executors() -> list[type[Executor]]:
    """Ways of running a list of cells (in-process, one process per GPU, a cluster)."""


@hookspec
def bench_reporters() -> list[type[Reporter]]:
    """Report output formats this plugin provides."""


@hookspec
def bench_loggers() -> list[type[Logger]]:
    """Loggers (TensorBoard, MLflow, ...) a suite can enable with `loggers = [...]`."""


# --- run events ----------------------------------------------------------------------------
# Called in the process that runs the suite (the driver), whichever executor ran the cell: a
# worker's events are forwarded to it. The progress display is an implementation of these.
# `slot` is the executor slot running the cell (0 with one slot).


@hookspec
def bench_run_started(suite: Suite, cells: list[Cell], done: int, searched: int) -> None:
    """A suite run starts: its planned cells, `done` of which already have a result, and `searched`
    more cells its searches will make as they run (trials, then the chosen setting's runs)."""


@hookspec
def bench_cell_started(cell: Cell, slot: int, epochs: int) -> None:
    """A cell (or a pretraining stage: `cell.is_pretraining`) starts running; `epochs` is its setting."""


@hookspec
def bench_epoch_started(cell: Cell, slot: int, epoch: int, steps: int, epochs: int) -> None:
    """Epoch `epoch` (0-based) of `epochs` (as `max_steps` leaves them) starts; it takes `steps` steps."""


@hookspec
def bench_step(cell: Cell, slot: int, step: int, steps: int, loss: float, lr: float, samples_per_second: float) -> None:
    """Training reached optimizer step `step` (`steps` since the last event; at most about five
    events a second): `loss` is the epoch's running mean, `lr` the base learning rate now."""


@hookspec
def bench_epoch_finished(
    cell: Cell, slot: int, epoch: int, step: int, train_loss: float | None, val: dict[str, float | None]
) -> None:
    """Epoch `epoch` ended at step `step`: its mean training loss and the validation metrics."""


@hookspec
def bench_cell_finished(cell: Cell, result: CellResult, slot: int) -> None:
    """A cell (or pretraining stage) has a result, any status, and it has been stored."""


@hookspec
def bench_message(text: str) -> None:
    """Something the user should read (a file moved aside, a cell run elsewhere)."""


@hookspec
def bench_run_finished(suite: Suite, summary: RunSummary) -> None:
    """The suite run ended (also when stopped early: `summary.stopped`)."""

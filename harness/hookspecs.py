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
    from harness.components import Backbone, Dataset, Executor, Reporter, Strategy, Task
    from harness.result import CellResult

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


# --- events --------------------------------------------------------------------------------


@hookspec
def bench_cell_started(cell: Cell) -> None:
    """A cell is about to run."""


@hookspec
def bench_cell_finished(cell: Cell, result: CellResult) -> None:
    """A cell has a result (any status) and it has been stored."""

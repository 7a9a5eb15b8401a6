"""Run events: one typed record each, and the observer that carries them from a training loop to the driver.

An event is declared once here, as a frozen dataclass that names its `bench_*` hook; its fields are
the hook's arguments (a test holds them equal to `harness.hookspecs`). Events pickle, so a worker
process or a Ray task sends the objects themselves to the driver (`harness.progress.Forwarding`),
as pytest-xdist sends its reports, and the driver calls each hook implementation with the event's
fields (`harness.progress.HookRelay`). A training loop does not know which cell or executor slot it
runs in: the slot's view of the observer fills in `cell` and `slot` (`Observer.slot`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar

from harness.cell import Cell
from harness.result import CellResult, RunSummary

if TYPE_CHECKING:
    from harness.settings import Suite


@dataclass(frozen=True)
class Event:
    """A run event; `hook` is the `bench_*` hook its fields are the arguments of."""

    hook: ClassVar[str]

    def arguments(self) -> dict[str, Any]:
        """The hook's arguments, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class CellEvent(Event):
    """An event of one cell, from the executor slot running it (both filled in by the slot's view)."""

    cell: Cell | None = None
    slot: int = 0

    def placed(self, cell: Cell | None, slot: int) -> CellEvent:
        return replace(self, cell=cell, slot=slot)


@dataclass(frozen=True)
class RunStarted(Event):
    """A suite run starts: its cells in run order; `done` of them are already in the store."""

    hook: ClassVar[str] = "bench_run_started"
    suite: Suite
    cells: list[Cell]
    done: int
    #: cells the searches will add as they run (trials and final runs still to come)
    searched: int = 0


@dataclass(frozen=True)
class CellStarted(CellEvent):
    """A cell starts running; `epochs`: the suite's setting (`max_steps` may cut it: see `EpochStarted`)."""

    hook: ClassVar[str] = "bench_cell_started"
    epochs: int = 0


@dataclass(frozen=True)
class EpochStarted(CellEvent):
    """Epoch `epoch` (0-based) of `epochs` starts; it takes `steps` optimizer steps."""

    hook: ClassVar[str] = "bench_epoch_started"
    epoch: int = 0
    steps: int = 0
    epochs: int = 0


@dataclass(frozen=True)
class Step(CellEvent):
    """`steps` optimizer steps done since the last event, up to `step`; `loss`: the epoch's running mean.

    Sent at most every `STEP_EVENT_INTERVAL` seconds (reading the loss syncs the device)."""

    hook: ClassVar[str] = "bench_step"
    step: int = 0
    steps: int = 1
    loss: float = 0.0
    lr: float = 0.0
    samples_per_second: float = 0.0


@dataclass(frozen=True)
class EpochFinished(CellEvent):
    """An epoch and its validation are done: the epoch's training loss and validation metrics."""

    hook: ClassVar[str] = "bench_epoch_finished"
    epoch: int = 0
    step: int = 0
    train_loss: float | None = None
    val: dict[str, float | None] | None = None


@dataclass(frozen=True)
class CellFinished(CellEvent):
    """A cell has its result (stored already), whatever its status."""

    hook: ClassVar[str] = "bench_cell_finished"
    result: CellResult | None = None


@dataclass(frozen=True)
class Message(Event):
    """Something the user should read (a corrupt file moved aside, a checkpoint built again)."""

    hook: ClassVar[str] = "bench_message"
    text: str


@dataclass(frozen=True)
class RunFinished(Event):
    """A suite run is over: what it did."""

    hook: ClassVar[str] = "bench_run_finished"
    suite: Suite
    summary: RunSummary


#: every event, in the order a run sends them
EVENTS: tuple[type[Event], ...] = (
    RunStarted,
    CellStarted,
    EpochStarted,
    Step,
    EpochFinished,
    CellFinished,
    Message,
    RunFinished,
)


class Observer:
    """Where a run sends its events; this base ignores them.

    `slot(n)` is the view of executor slot `n`: it fills in the cell it runs and its index. A
    worker's observer forwards events to the driver (`harness.progress.Forwarding`); the driver's
    turns them into hook calls (`harness.progress.HookRelay`).
    """

    def emit(self, event: Event) -> None:
        """Send `event` on."""

    def slot(self, index: int) -> Observer:
        """The view of executor slot `index` (this observer itself when there is one slot)."""
        return self

    def message(self, text: str) -> None:
        self.emit(Message(text))

    def close(self) -> None: ...

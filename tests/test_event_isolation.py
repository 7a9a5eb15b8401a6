"""Run events reach every plugin: one logger's bug hides no event from the progress display or the others."""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness import hookimpl
from harness.driver import run_suite
from harness.progress import QuietProgress
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite


def _suite(output: Path) -> dict[str, Any]:
    return tiny_suite(output, tasks=[{"name": "cls", "kind": "classification", "dataset": tiny_dataset()}])


class Raising:
    """A third-party logger with a bug in one of its event hooks."""

    @hookimpl
    def bench_epoch_finished(self, cell: Any, epoch: int) -> None:
        raise ValueError("a logger's bug")


class Recording:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def bench_epoch_finished(self, cell: Any, epoch: int) -> None:
        self.events.append(("epoch_finished", epoch))

    @hookimpl
    def bench_cell_finished(self, cell: Any, result: Any) -> None:
        self.events.append(("cell_finished", result.status))


@pytest.mark.parametrize("order", ["raising_first", "raising_last"])
def test_a_raising_logger_hides_no_event_from_the_others(tmp_path: Path, order: str) -> None:
    """Each hook implementation is called on its own: the failure is reported once, naming the plugin,
    and the other plugins (a second logger, the progress display) still receive every event."""
    registry = Registry(entry_points=False)
    recording, raising = Recording(), Raising()
    for plugin in [raising, recording] if order == "raising_first" else [recording, raising]:
        registry.register(plugin, "a test logger")
    data = _suite(tmp_path / "out")
    data["strategies"] = [{"name": "linear_probe"}]
    data["baseline"] = "linear_probe"
    data["training"]["epochs"] = 2
    shown = io.StringIO()
    registry.register(QuietProgress(Console(file=shown, width=200)), "bench (built-in)")
    with pytest.warns(RuntimeWarning) as caught:
        summary = run_suite(parse_suite(data, registry=registry), registry)
    assert [r.status for r in Store(summary.output).results()] == ["ok"]
    assert recording.events == [("epoch_finished", 0), ("epoch_finished", 1), ("cell_finished", "ok")]
    failures = [str(w.message) for w in caught if "a logger's bug" in str(w.message)]
    assert len(failures) == 1 and "failed in bench_epoch_finished" in failures[0] and "Raising" in failures[0]
    assert "[1/1] " in shown.getvalue() and ": ok" in shown.getvalue()


def test_every_event_is_declared_once_with_its_hooks_arguments() -> None:
    """An event's fields are exactly its hook's arguments: the hook call is built from the object."""
    import inspect

    from harness import hookspecs
    from harness.events import EVENTS

    hooks = {name for name in dir(hookspecs) if name.startswith("bench_") and not name.endswith("s")}
    assert {event.hook for event in EVENTS} == hooks | {"bench_run_started", "bench_run_finished"}
    for event in EVENTS:
        declared = list(inspect.signature(getattr(hookspecs, event.hook)).parameters)
        assert sorted(f.name for f in dataclasses.fields(event)) == sorted(declared), event.__name__


def test_events_cross_processes_as_the_objects_themselves(tmp_path: Path) -> None:
    """Two worker processes train; their epoch events reach a logger in the driver as typed objects,
    each with its cell and slot, and a raising logger there still hides none of them."""
    registry = Registry(entry_points=False)
    recording, raising = Recording(), Raising()
    registry.register(raising, "a test logger")
    registry.register(recording, "a test logger")
    data = _suite(tmp_path / "out")
    data["strategies"] = [{"name": "linear_probe"}, {"name": "full"}]
    data["baseline"] = "linear_probe"
    data["executor"] = {"name": "processes", "options": {"slots": 2, "threads": 1}}
    with pytest.warns(RuntimeWarning, match="a logger's bug"):
        summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 2}
    epochs = [e for e in recording.events if e[0] == "epoch_finished"]
    assert len(epochs) == 2 * data["training"]["epochs"]


def test_a_forwarded_step_event_merges_the_steps_it_stands_for() -> None:
    from harness.events import EpochFinished, Step
    from harness.progress import Forwarding

    sent: list[Any] = []
    forwarding = Forwarding(sent.append, interval=3600.0)
    forwarding.emit(Step(step=1, steps=1, loss=2.0))  # the first is sent at once (no event before it)
    forwarding.emit(Step(step=2, steps=1, loss=1.5))
    forwarding.emit(Step(step=3, steps=1, loss=1.0))
    forwarding.emit(EpochFinished(epoch=0, step=3, train_loss=1.0, val={"top1": 0.5}))
    events = [event for _, event in sent]
    assert [type(e).__name__ for e in events] == ["Step", "Step", "EpochFinished"]
    assert (events[1].step, events[1].steps, events[1].loss) == (3, 2, 1.0)
    assert pickle.loads(pickle.dumps(events[2])) == events[2]

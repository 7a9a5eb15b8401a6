"""Run events reach every plugin: one logger's bug hides no event from the progress display or the others."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness import hookimpl
from harness.progress import QuietProgress
from harness.registry import Registry
from harness.runner import run_suite
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
    for plugin in ([raising, recording] if order == "raising_first" else [recording, raising]):
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

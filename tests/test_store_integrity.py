"""Nothing in the results directory is silently lost: corrupt and newer documents, checkpoint hashes,
stale temporary files, failed writes, read-only directories and the run history in the manifest."""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness import hookimpl
from harness import store as store_module
from harness.cli import create_app
from harness.driver import run_suite
from harness.events import Event, Message, Observer
from harness.registry import Registry
from harness.result import CellResult, Cost, RunSummary
from harness.store import (
    SCHEMA,
    NotOverwritten,
    Store,
    load_results,
    planned_results,
    read_planned,
    write_checkpoint,
)
from harness.suite import parse_suite
from tests import store_plugins
from tests.conftest import tiny_dataset, tiny_suite, to_toml

app = create_app()
cli = CliRunner()


class Recorder(Observer):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def emit(self, event: Event) -> None:
        if isinstance(event, Message):
            self.messages.append(event.text)


def _result(key: str, status: str = "ok", top1: float = 0.5, seed: int = 0, strategy: str = "full") -> CellResult:
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    return CellResult(
        key, status, "cls", "resnet18", strategy, seed, settings, metrics={"top1": top1},  # type: ignore[arg-type]
        cost=Cost(train_seconds=2.0, trainable_params=10, total_params=20),
    )  # fmt: skip


def _data(output: Path, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("strategies", [{"name": "scratch"}, {"name": "linear_probe"}])
    data = tiny_suite(output, **overrides)
    data["tasks"] = data["tasks"][:1]
    data["training"]["max_steps"] = 1
    return data


def _run(data: dict[str, Any], registry: Registry, observer: Observer | None = None) -> RunSummary:
    return run_suite(parse_suite(data, registry=registry), registry, observer=observer)


# --- reading: corrupt, newer, schema -----------------------------------------------------------


def test_documents_carry_a_schema_and_files_without_one_read_as_version_1(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    assert json.loads(store.cell_path("aaa").read_text())["schema"] == SCHEMA == 1
    old = {k: v for k, v in _result("bbb").to_json().items() if k != "data"}  # an old document: no schema
    store.cell_path("bbb").write_text(json.dumps(old))
    assert store.load("bbb") == _result("bbb")
    store.write_manifest({"cells": ["aaa", "bbb"]})
    assert json.loads((tmp_path / "manifest.json").read_text())["schema"] == SCHEMA
    assert list(load_results(tmp_path)["key"]) == ["aaa", "bbb"]


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b'{"key": "ccc", "status": "ok", "ta', "corrupt"),  # truncated
        (b"[]", "corrupt"),
        (b"3", "corrupt"),
        (b"\x80\x04\x95\x00\xff\xfe binary", "corrupt"),
        (b'{"key": "ccc", "status": "ok", "task": 3}', "corrupt"),  # missing fields, wrong types
        (json.dumps({**_result("ccc").to_json(), "seed": "zero"}).encode(), "corrupt"),
        (json.dumps({**_result("ccc").to_json(), "curve": [None]}).encode(), "corrupt"),  # entries are objects
        (json.dumps({**_result("ccc").to_json(), "lineage": {}}).encode(), "newer"),  # an unknown key
        (json.dumps({**_result("ccc").to_json(), "schema": 2}).encode(), "newer"),
    ],
)
def test_unreadable_cells_are_reported_not_silently_dropped(tmp_path: Path, content: bytes, kind: str) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    store.cell_path("ccc").write_bytes(content)
    store.write_manifest({"cells": ["aaa", "ccc"]})
    with pytest.warns(UserWarning, match=r"skipped .*ccc\.json"):
        frame = load_results(tmp_path)
    assert list(frame["key"]) == ["aaa"]
    (skipped,) = read_planned(tmp_path).skipped
    assert skipped.path == store.cell_path("ccc") and skipped.kind == kind
    assert frame.attrs["skipped"] == [str(skipped)]
    assert not store.is_done("ccc")


def test_a_newer_document_is_never_overwritten(tmp_path: Path) -> None:
    store = Store(tmp_path)
    newer = json.dumps({**_result("aaa").to_json(), "schema": 2}).encode()
    store.cell_path("aaa").parent.mkdir(parents=True)
    store.cell_path("aaa").write_bytes(newer)
    with pytest.raises(NotOverwritten, match=r"newer bench \(schema 2.*not overwritten"):
        store.save(_result("aaa", status="failed"))
    assert store.cell_path("aaa").read_bytes() == newer


def test_report_names_the_files_it_skipped(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    store.save(_result("bbb", strategy="scratch"))
    store.cell_path("ccc").write_text("{trunc")
    (tmp_path / "manifest.json").write_bytes(b"\x00\x01garbage")
    result = cli.invoke(app, ["report", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "warning: skipped" in result.stderr and "ccc.json: corrupt" in result.stderr
    assert "manifest.json: corrupt" in result.stderr
    assert "Traceback" not in result.output
    assert {line.split(",")[0] for line in result.stdout.splitlines()[1:]} == {"cls"}  # every cell reported
    assert len(result.stdout.splitlines()) == 3


def test_endless_and_huge_cell_files_are_skipped_unread(tmp_path: Path) -> None:
    """A symlink to /dev/zero or a file of gigabytes would take all memory if read: skipped by its size."""
    store = Store(tmp_path)
    store.save(_result("aaa"))
    (store.cells_dir / "zero.json").symlink_to("/dev/zero")
    with open(store.cell_path("huge"), "wb") as f:  # sparse: no disk used
        f.truncate(store_module.MAX_DOCUMENT_BYTES + 1)
    (store.cells_dir / "loop.json").symlink_to(store.cells_dir / "loop.json")
    result = cli.invoke(app, ["report", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "zero.json: corrupt: not a regular file" in result.stderr
    assert "huge.json: corrupt" in result.stderr and "more than a result document can be" in result.stderr
    assert "loop.json: corrupt: cannot be read" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # the header and the one readable cell


def test_a_garbage_manifest_falls_back_to_every_cell(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    for garbage in (b"[1, 2]", b"{broken", b'{"cells": 3}'):
        (tmp_path / "manifest.json").write_bytes(garbage)
        planned = read_planned(tmp_path)
        assert [r.key for r in planned.results] == ["aaa"]
        assert [s.path.name for s in planned.skipped] == ["manifest.json"]


# --- bench run: corrupt aside, newer kept, garbage manifest -----------------------------------


def test_run_moves_corrupt_cells_aside_keeps_newer_ones_and_goes_on(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path / "out", seeds=[0, 1])
    suite = parse_suite(data, registry=registry)
    from harness.grid import plan_cells

    keys = [c.key for c in plan_cells(suite, registry)]
    store = Store(tmp_path / "out")
    store.cells_dir.mkdir(parents=True)
    store.cell_path(keys[0]).write_bytes(b"[]")
    store.cell_path(keys[1]).write_bytes(b"\xff\xfe\x00binary")
    store.cell_path("stray").write_bytes(b"3")  # not a cell of this suite, corrupt all the same
    newer = json.dumps({**_result(keys[2]).to_json(), "schema": 2}).encode()
    store.cell_path(keys[2]).write_bytes(newer)
    (tmp_path / "out" / "manifest.json").write_text("{not json")
    observer = Recorder()
    summary = _run(data, registry, observer)

    assert summary.statuses == {"ok": 3, "skipped": 1}
    assert store.cell_path(keys[2]).read_bytes() == newer  # never overwritten
    assert store.load(keys[0]) is not None and store.load(keys[1]) is not None  # recomputed
    corrupt = store.cells_dir / "corrupt"
    assert sorted(p.name for p in corrupt.iterdir()) == sorted([f"{keys[0]}.json", f"{keys[1]}.json", "stray.json"])
    assert (corrupt / f"{keys[0]}.json").read_bytes() == b"[]"
    text = "\n".join(observer.messages)
    assert f"{keys[0]}.json is corrupt" in text and "moved to" in text
    assert "schema 2" in text and (tmp_path / "out" / "corrupt" / "manifest.json").is_file()
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["cells"] == keys and manifest["schema"] == SCHEMA
    (skipped,) = [r for r in read_planned(tmp_path / "out").results if r.key == keys[2]] or [None]
    assert skipped is None  # the report leaves the newer cell out, and says so
    assert [s.kind for s in read_planned(tmp_path / "out").skipped] == ["newer"]
    result = Store(tmp_path / "out")
    assert result.is_done(keys[0]) and not result.is_done(keys[2])


def test_run_reports_the_newer_cell_as_skipped_with_its_reason(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path / "out")
    data["strategies"] = data["strategies"][:1]
    from harness.grid import plan_cells

    (cell,) = plan_cells(parse_suite(data, registry=registry), registry)
    store = Store(tmp_path / "out")
    store.cells_dir.mkdir(parents=True)
    store.cell_path(cell.key).write_text(json.dumps({**_result(cell.key).to_json(), "provenance2": {}}))
    reasons: list[str] = []

    class Collect:
        @hookimpl
        def bench_cell_finished(self, result: CellResult) -> None:
            reasons.append(f"{result.status}: {result.reason}")

    collect = Collect()
    registry.pm.register(collect)
    try:
        summary = _run(data, registry)
    finally:
        registry.pm.unregister(collect)
    assert summary.statuses == {"skipped": 1} and not summary.failed
    why = "written by a newer or other bench: unknown fields provenance2; not overwritten"
    assert reasons == [f"skipped: {store.cell_path(cell.key)}: {why}"]


# --- checkpoints ------------------------------------------------------------------------------


def test_a_checkpoint_that_does_not_match_its_hash_counts_as_absent(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("teacher"))
    write_checkpoint(store.model_path("teacher"), b"weights" * 1000)
    assert (tmp_path / "models" / "teacher.pt.sha256").is_file()
    assert store.is_done("teacher", needs_model=True)
    data = store.model_path("teacher").read_bytes()
    store.model_path("teacher").write_bytes(data[:100])  # truncated
    assert not store.is_done("teacher", needs_model=True)
    assert "does not match its recorded sha256" in store.bad_checkpoints[store.model_path("teacher")]
    store.model_path("teacher").write_bytes(data)
    assert store.is_done("teacher", needs_model=True)
    (tmp_path / "models" / "teacher.pt.sha256").unlink()  # written before hashes were recorded: trusted
    assert store.is_done("teacher", needs_model=True)


def test_a_truncated_pretraining_checkpoint_is_built_again(tmp_path: Path, registry: Registry) -> None:
    data = _data(
        tmp_path / "out",
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(shapes=["star", "hexagon"], seed=5)}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
        strategies=[{"name": "linear_probe"}],
    )
    first = _run(data, registry)
    assert first.pretrained == 1 and first.statuses == {"ok": 1}
    store = Store(first.output)
    (checkpoint,) = store.pretrain_dir.glob("*.pt")
    intact = checkpoint.read_bytes()
    checkpoint.write_bytes(intact[: len(intact) // 2])
    assert not store.is_pretrained(checkpoint.stem)
    for cell in store.cells_dir.glob("*.json"):
        cell.unlink()  # a cell to run, which needs the stage
    observer = Recorder()
    second = _run(data, registry, observer)
    assert second.pretrained == 1 and second.statuses == {"ok": 1}  # the stage ran again
    assert checkpoint.read_bytes() != intact[: len(intact) // 2] and store.is_pretrained(checkpoint.stem)
    assert any("does not match its recorded sha256" in m for m in observer.messages)


# --- temporary files --------------------------------------------------------------------------


def test_stale_temporary_files_are_removed_fresh_ones_kept(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path / "out")
    data["strategies"] = data["strategies"][:1]
    store = Store(tmp_path / "out")
    store.cells_dir.mkdir(parents=True)
    store.pretrain_dir.mkdir()
    stale = [
        store.cells_dir / ".abc.json.x1y2.tmp",
        store.pretrain_dir / ".k.pt.zz.tmp",
        store.root / ".manifest.json.q.tmp",
    ]
    for path in stale:
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    fresh = store.cells_dir / ".def.json.live.tmp"  # another run writing right now
    fresh.write_bytes(b"partial")
    observer = Recorder()
    _run(data, registry, observer)
    assert not any(path.exists() for path in stale)
    assert fresh.exists()
    assert sum("temporary file" in m for m in observer.messages) == 3


# --- failed writes ----------------------------------------------------------------------------


def _fail_writes_to(monkeypatch: pytest.MonkeyPatch, fails: Any, error: int = errno.ENOSPC) -> None:
    write = store_module.write_atomically

    def failing(path: Path, data: bytes) -> None:
        if fails(path):
            raise OSError(error, os.strerror(error))
        write(path, data)

    monkeypatch.setattr(store_module, "write_atomically", failing)


def test_a_full_disk_fails_the_cell_and_stops_the_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(tmp_path / "out", seeds=[0, 1])
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    written: list[Path] = []

    def second_cell(path: Path) -> bool:
        if path.parent.name != "cells":
            return False
        written.append(path)
        return len(written) == 2

    _fail_writes_to(monkeypatch, second_cell)
    result = cli.invoke(app, ["run", str(suite), "--quiet"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line == f"error: cannot write {written[1]}: No space left on device; stopped, 1 finished cells are kept"
    store = Store(tmp_path / "out")
    assert [r.status for r in store.results()] == ["ok"]  # the first cell is kept
    assert len(written) == 2  # nothing was submitted after the failure


def test_a_write_failure_in_a_worker_process_stops_the_suite(tmp_path: Path) -> None:
    registry = Registry(plugins=[(store_plugins, "test-plugins")], entry_points=False)
    data = _data(
        tmp_path / "out",
        executor={"name": "processes", "options": {"slots": 1, "threads": 1}},
        strategies=[{"name": "blocks_result"}, {"name": "scratch"}, {"name": "linear_probe"}],
    )
    from harness.grid import plan_cells

    cells = plan_cells(parse_suite(data, registry=registry), registry)
    blocked = Store(tmp_path / "out").cell_path(cells[0].key)
    os.environ["BENCH_TEST_BLOCK"] = str(blocked)
    try:
        summary = _run(data, registry)
    finally:
        del os.environ["BENCH_TEST_BLOCK"]
    assert summary.stopped is not None and summary.stopped.startswith(f"cannot write {blocked}: ")
    assert summary.statuses == {"failed": 1}  # the suite stopped: the other cells were never submitted


def test_a_checkpoint_that_cannot_be_written_stops_the_suite(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(
        tmp_path / "out",
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(shapes=["star", "hexagon"], seed=5)}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
        strategies=[{"name": "linear_probe"}],
    )
    _fail_writes_to(monkeypatch, lambda path: path.parent.name == "pretrain" and ".pt" in path.name)
    summary = _run(data, registry)
    assert summary.stopped is not None and "cannot write" in summary.stopped
    assert "No space left on device; stopped, 0 finished cells are kept" in summary.stopped
    assert summary.statuses == {}  # the cell needing the stage was never submitted
    (stage,) = Store(tmp_path / "out").pretrain_dir.glob("*.json")
    assert json.loads(stage.read_text())["status"] == "failed"


# --- read-only results ------------------------------------------------------------------------


def test_a_read_only_results_directory_with_every_cell_done_runs_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(tmp_path / "out")
    data["strategies"] = data["strategies"][:1]
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    assert cli.invoke(app, ["run", str(suite), "--quiet"]).exit_code == 0
    out = tmp_path / "out"
    folders = [out, *[p for p in out.rglob("*") if p.is_dir()]]
    if os.geteuid() == 0:  # root ignores permissions: refuse every write as a read-only folder would
        _fail_writes_to(monkeypatch, lambda path: True, errno.EROFS)
        monkeypatch.setattr("harness.claims.os.open", _refuse)
    for folder in folders:
        folder.chmod(0o555)
    try:
        result = cli.invoke(app, ["run", str(suite), "--quiet"])
    finally:
        for folder in folders:
            folder.chmod(0o755)
    assert result.exit_code == 0, result.output
    assert "1 already done" in result.stderr


def _refuse(*args: Any, **kwargs: Any) -> int:
    raise PermissionError(errno.EACCES, "Permission denied")


# --- the run history --------------------------------------------------------------------------


def test_runs_with_different_seeds_are_all_reported(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path / "out")
    data["strategies"] = data["strategies"][:1]
    _run({**data, "seeds": [0]}, registry)
    _run({**data, "seeds": [1]}, registry)
    frame = load_results(tmp_path / "out")
    assert list(frame["seed"]) == [0, 1]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert len(manifest["runs"]) == 2 and all(run["finished_at"] for run in manifest["runs"])
    _run({**data, "seeds": [1]}, registry)  # a rerun of the same plan adds no history
    assert len(json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"]) == 2

    # changed settings: the new cells replace the old ones with the same labels, the others stay
    changed = {**data, "seeds": [0], "training": {**data["training"], "lr": 0.01}}
    _run(changed, registry)
    results = planned_results(tmp_path / "out")
    assert [r.seed for r in results] == [1, 0]
    assert results[1].settings["training"]["lr"] == 0.01


def test_an_old_manifest_without_history_still_selects_its_cells(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for key in ("k1", "k2", "old"):
        store.save(_result(key, seed={"k1": 0, "k2": 1, "old": 2}[key]))
    store.write_manifest({"cells": ["k2", "k1"], "labels": {"k1": {"strategy": "lp"}}})
    results = planned_results(tmp_path)
    assert [(r.key, r.strategy) for r in results] == [("k2", "full"), ("k1", "lp")]


def test_compare_names_the_files_it_skipped(tmp_path: Path) -> None:
    for run in ("a", "b"):
        store = Store(tmp_path / run)
        store.save(_result("aaa"))
        store.save(_result("bbb", strategy="scratch"))
    Store(tmp_path / "b").cell_path("ccc").write_text("[]")
    result = cli.invoke(app, ["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "ccc.json: corrupt" in result.stderr

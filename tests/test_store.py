"""The store: atomic files, what counts as done, and `load_results`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import BenchError
from harness.result import CellResult, Cost
from harness.store import Store, load_results, write_atomically


def _result(key: str, status: str = "ok", top1: float = 0.5) -> CellResult:
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    return CellResult(
        key,
        status,
        "cls",
        "resnet18",
        "full",
        0,
        settings,
        metrics={"top1": top1},
        cost=Cost(train_seconds=2.0, trainable_params=10, total_params=20),
    )


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "a.json"
    write_atomically(target, b"first")

    def fail(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr("harness.store.os.fsync", fail)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_only_ok_results_count_as_done(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    store.save(_result("bbb", status="failed"))
    (store.cells_dir / "ccc.json").write_text("{truncated")
    assert store.is_done("aaa")
    assert not store.is_done("bbb")
    assert not store.is_done("ccc")  # unreadable: recomputed, never crashes the run
    assert not store.is_done("ddd")


def test_result_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    original = _result("aaa")
    store.save(original)
    assert store.load("aaa") == original
    assert json.loads(store.cell_path("aaa").read_text())["cost"]["trainable_params"] == 10


def test_load_results_follows_the_manifest(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for key, top1 in (("k2", 0.2), ("k1", 0.1), ("old", 0.9)):
        store.save(_result(key, top1=top1))
    store.write_manifest({"cells": ["k1", "k2"]})
    frame = load_results(tmp_path)
    assert list(frame["key"]) == ["k1", "k2"]  # plan order, stale cells left out
    assert list(frame["metric.top1"]) == [0.1, 0.2]
    assert frame.loc[0, "cost.trainable_params"] == 10


def test_load_results_on_a_wrong_path(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="not a results directory"):
        load_results(tmp_path / "nothing")

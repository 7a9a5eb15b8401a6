"""Sweeps: lists of training settings or strategy options add grid axes; reports pick settings on validation only."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.report import build_report
from harness.result import CellResult
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_suite


def _suite(tmp_path: Path, registry, strategies, **overrides):
    data = tiny_suite(tmp_path, strategies=strategies, **overrides)
    data["tasks"] = data["tasks"][:1]
    return parse_suite(data, "s.toml", registry)


def test_lists_of_training_settings_and_options_multiply_the_cells(tmp_path: Path, registry) -> None:
    strategies = [
        {"name": "full", "training": {"lr": [0.001, 0.01]}},
        {"name": "lora", "options": {"rank": [2, 4], "layers": ["conv"]}, "training": {"epochs": [1, 2]}},
        {"name": "linear_probe"},
    ]
    cells = plan_cells(_suite(tmp_path, registry, strategies), registry)
    settings = [(c.strategy, c.setting) for c in cells]
    assert settings == [
        ("full", "lr=0.001"),
        ("full", "lr=0.01"),
        ("lora", "epochs=1, rank=2"),
        ("lora", "epochs=1, rank=4"),
        ("lora", "epochs=2, rank=2"),
        ("lora", "epochs=2, rank=4"),
        ("linear_probe", ""),
    ]
    assert [c.settings.training.lr for c in cells[:2]] == [0.001, 0.01]
    lora = cells[5]
    assert lora.settings.training.epochs == 2
    options = lora.settings.strategy.options
    assert (options["rank"], options["layers"]) == (4, ["conv"])  # a list option is not a sweep
    assert options["alpha"] is not None  # every option is in the settings, defaults resolved
    assert len({c.key for c in cells}) == len(cells)


def test_a_list_option_is_swept_with_a_list_of_lists(tmp_path: Path, registry) -> None:
    strategies = [{"name": "lora", "options": {"layers": [["conv"], ["conv", "linear"]]}}]
    cells = plan_cells(_suite(tmp_path, registry, strategies), registry)
    assert [c.settings.strategy.options["layers"] for c in cells] == [["conv"], ["conv", "linear"]]


def test_the_most_specific_level_wins(tmp_path: Path, registry) -> None:
    strategies = [{"name": "full", "training": {"lr": 0.5}}, {"name": "scratch"}]
    suite = _suite(tmp_path, registry, strategies, training={"epochs": 1, "lr": [0.1, 0.2], "threads": 2})
    cells = plan_cells(suite, registry)
    assert [(c.strategy, c.settings.training.lr) for c in cells] == [
        ("full", 0.5),
        ("scratch", 0.1),
        ("scratch", 0.2),
    ]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            {"name": "full", "training": {"lr": [0.1, -1.0]}},
            "s.toml: strategies[0].training.lr[1]: Input should be greater than 0",
        ),
        (
            {"name": "full", "training": {"lr": []}},
            "s.toml: strategies[0].training.lr: a sweep needs at least one value",
        ),
        (
            {"name": "lora", "options": {"rank": [4, 0]}},
            "s.toml: strategies[0].options.rank[1]: Input should be greater than or equal to 1",
        ),
        (
            {"name": "lora", "options": {"layers": [["conv"], ["attention"]]}},
            "s.toml: strategies[0].options.layers[1]: ",
        ),
    ],
)
def test_bad_sweep_values_name_their_position(tmp_path: Path, registry, strategy, expected: str) -> None:
    with pytest.raises(SuiteError) as error:
        _suite(tmp_path, registry, [strategy])
    assert str(error.value).startswith(expected)


def _result(key, strategy, setting, seed, val, test):
    settings = {"task": {"kind": "classification", "metric": "top1"}, "strategy": {"batchnorm": "train"}}
    curve = [{"epoch": 1, "step": 1, "train_loss": 1.0, "val": {"top1": val}}]
    result = CellResult(key, "ok", "cls", "r18", strategy, seed, settings, setting, {"top1": test}, curve=curve)
    result.cost.train_seconds = 36.0
    return result


def test_report_shows_each_strategy_at_its_best_validation_setting(tmp_path: Path) -> None:
    store = Store(tmp_path)
    results = [
        _result("b0", "scratch", "", 0, 0.30, 0.30),
        _result("b1", "scratch", "", 1, 0.32, 0.32),
        # lr=0.1 has the best test score but the worse validation score: it must not be chosen
        _result("a0", "full", "lr=0.1", 0, 0.50, 0.90),
        _result("a1", "full", "lr=0.1", 1, 0.52, 0.92),
        _result("c0", "full", "lr=0.01", 0, 0.60, 0.70),
        _result("c1", "full", "lr=0.01", 1, 0.62, 0.72),
    ]
    for result in results:
        store.save(result)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": [r.key for r in results]})

    (table,) = build_report(tmp_path).tables
    full = table.rows[table.rows["strategy"] == "full"]
    assert list(full["setting"]) == ["lr=0.01"]
    assert full["mean"].iloc[0] == pytest.approx(0.71)
    assert full["gain"].iloc[0] == pytest.approx(0.71 - 0.31)
    assert any("best validation top1" in note and "test split plays no part" in note for note in table.notes)

    (every,) = build_report(tmp_path, all_settings=True).tables
    shown = every.rows.set_index(["strategy", "setting"])
    assert shown.loc[("full", "lr=0.1"), "selected"] == False  # noqa: E712
    assert shown.loc[("full", "lr=0.1"), "gain"] == pytest.approx(0.91 - 0.31)
    assert shown.loc[("full", "lr=0.01"), "selected"] == True  # noqa: E712


def test_reused_cells_take_the_current_suites_labels(tmp_path: Path, registry) -> None:
    from harness.driver import run_suite
    from harness.store import load_results

    training = {"epochs": 1, "max_steps": 1, "batch_size": 8, "threads": 2}
    first = _suite(tmp_path, registry, [{"name": "lora", "options": {"rank": 2}}], training=training)
    run_suite(first, registry)
    widened = [{"name": "lora", "label": "adapters", "options": {"rank": [2, 4]}}]
    summary = run_suite(_suite(tmp_path, registry, widened, training=training), registry)
    assert (summary.total, summary.reused) == (2, 1)
    frame = load_results(tmp_path)
    assert list(zip(frame["strategy"], frame["setting"], strict=True)) == [
        ("adapters", "rank=2"),
        ("adapters", "rank=4"),
    ]

"""Stored results stay valid: every cell key of the shipped suites is the one recorded in
tests/fixtures/cell-keys.json. A change to how settings resolve, or a new option with a default
(unless marked OMITTED_AT_DEFAULT), would give new keys and recompute every stored cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.grid import plan_cells
from harness.registry import Registry
from harness.suite import load_suite

ROOT = Path(__file__).parents[1]
RECORDED = json.loads((ROOT / "tests" / "fixtures" / "cell-keys.json").read_text())
#: strategies added to a shipped suite after its keys were recorded: their cells are new, not changed
ADDED_SINCE = {"sam", "soup"}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_every_cell_key_of_a_shipped_suite_is_unchanged(name: str) -> None:
    registry = Registry(entry_points=False)
    cells = plan_cells(load_suite(ROOT / "suites" / name, registry), registry)
    # every recorded key is planned again; the only new cells are those of strategies added since
    assert set(RECORDED[name]) <= {cell.key for cell in cells}
    added = {cell.strategy for cell in cells if cell.key not in RECORDED[name]}
    assert added <= ADDED_SINCE, added


def test_an_option_omitted_at_its_default_keeps_the_key_and_setting_it_makes_a_new_one(tmp_path: Path) -> None:
    from harness.grid import task_settings

    registry = Registry(entry_points=False)
    task = registry.create("task", "segmentation")
    dataset = load_suite(ROOT / "suites" / "quickstart.toml", registry).tasks[2].dataset
    default = task_settings(task, dataset, {}, None, registry).options
    assert "head_channels" not in default and "atrous_rates" not in default
    assert task_settings(task, dataset, {"head_channels": 256}, None, registry).options == default
    narrow = task_settings(task, dataset, {"head_channels": 64}, None, registry).options
    assert narrow == {**default, "head_channels": 64}

"""`bench plan`'s answer as one object: each cell of the grid with its state, the pretraining stages,
and what the cells to run will cost. The command only renders it (a table, CSV or JSON), so the
three formats can never disagree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cell import Cell
from harness.estimate import (
    SLOTS,
    GroupEstimate,
    Throughput,
    cell_jobs,
    device_throughput,
    estimate,
    wall_hours,
)
from harness.grid import plan_cells, pretrain_cell
from harness.registry import Registry
from harness.search import SearchPlan, plan_searches
from harness.search_summary import read_summary
from harness.selection import CellFilter, select_cells
from harness.settings import PretrainSpec, Suite
from harness.store import Store

#: the CSV's columns: a pretraining stage's row has task `pretrain:NAME` and no index
PLAN_CSV_COLUMNS = (
    "index", "task", "backbone", "strategy", "setting", "seed", "key", "state", "skip_reason", "teacher", "pretrain",
    "device_hours", "estimate_from",
)  # fmt: skip


@dataclass(frozen=True)
class PlannedCell:
    #: the cell's number in the whole grid, filtered by --only or not
    index: int
    cell: Cell
    #: "done", "to run" or "skipped"
    state: str


@dataclass(frozen=True)
class PlannedStage:
    spec: PretrainSpec
    stage: Cell
    #: "done" (checkpoint cached), "to run" or "not needed"
    state: str


@dataclass(frozen=True)
class PlannedSearch:
    """A strategy's search in the plan: its budget, what is done, and what the rest will cost."""

    task: str
    backbone: str
    strategy: str
    method: str
    budget: int
    trials_done: int
    finals: int
    finals_done: int
    #: estimated device-hours of one cell at the strategy's base setting (None: not estimated)
    cell_hours: float | None

    @property
    def tuning_hours(self) -> float | None:
        return None if self.cell_hours is None else self.cell_hours * (self.budget - self.trials_done)

    @property
    def final_hours(self) -> float | None:
        return None if self.cell_hours is None else self.cell_hours * (self.finals - self.finals_done)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "backbone": self.backbone,
            "strategy": self.strategy,
            "method": self.method,
            "trials": self.budget,
            "trials_done": self.trials_done,
            "final_runs": self.finals,
            "final_runs_done": self.finals_done,
            "tuning_device_hours": self.tuning_hours,
            "final_device_hours": self.final_hours,
        }


@dataclass(frozen=True)
class Plan:
    suite: Suite
    results: Path
    #: cells in the whole grid (before --only)
    grid_size: int
    selected: CellFilter | None
    cells: list[PlannedCell]
    stages: list[PlannedStage]
    #: the estimate of the cells and stages to run, per task x backbone
    groups: list[GroupEstimate]
    throughput: Throughput
    #: wall hours of the work to run, per number of parallel slots
    walls: dict[int, float]
    #: the suite's searches: their trials and final runs are made while the suite runs
    searches: tuple[PlannedSearch, ...] = ()

    @property
    def todo(self) -> list[Cell]:
        return [planned.cell for planned in self.cells if planned.state == "to run"]

    def counts(self) -> dict[str, int]:
        """How many cells are in each state, in the order the states first appear."""
        states = [planned.state for planned in self.cells]
        return {state: states.count(state) for state in dict.fromkeys(states)}

    def _hours_and_source(self) -> tuple[dict[str, float], dict[str, str]]:
        hours = {key: g.device_hours / g.cells for g in self.groups if g.device_hours is not None for key in g.keys}
        return hours, {key: g.source for g in self.groups for key in g.keys}

    def cell_rows(self) -> list[dict[str, Any]]:
        """One record per cell: labels, key, state, why skipped, what it needs, its estimate."""
        hours, where = self._hours_and_source()
        return [
            {
                "index": p.index,
                "task": p.cell.task,
                "backbone": p.cell.backbone,
                "strategy": p.cell.strategy,
                "setting": p.cell.setting,
                "seed": p.cell.seed,
                "key": p.cell.key,
                "state": p.state,
                "skip_reason": p.cell.skip_reason,
                "teacher": p.cell.teacher,
                "inputs": list(p.cell.inputs),
                "pretrain": p.cell.pretrain,
                "device_hours": hours.get(p.cell.key),
                "estimate_from": where.get(p.cell.key),
            }
            for p in self.cells
        ]

    def stage_rows(self) -> list[dict[str, Any]]:
        """One record per pretraining stage the planned cells use."""
        hours, where = self._hours_and_source()
        return [
            {
                "name": s.spec.name,
                "backbone": s.spec.backbone,
                "dataset": s.spec.dataset.name,
                "kind": s.spec.kind,
                "seed": s.spec.seed,
                "key": s.stage.key,
                "state": s.state,
                "device_hours": hours.get(s.stage.key),
                "estimate_from": where.get(s.stage.key),
            }
            for s in self.stages
        ]

    def estimate_document(self) -> dict[str, Any]:
        """The estimate as JSON: per group, the total, and the wall time per number of parallel slots."""
        known = [g.device_hours for g in self.groups if g.device_hours is not None]
        return {
            "tflops": self.throughput.tflops,
            "tflops_source": self.throughput.why,
            "groups": [
                {
                    "task": g.task,
                    "backbone": g.backbone,
                    "cells": g.cells,
                    "train_images": g.train_images,
                    "eval_images": g.eval_images,
                    "images_per_second": g.images_per_second,
                    "flops_per_image": g.flops_per_image,
                    "device_hours": g.device_hours,
                    "basis": g.basis,
                    "from": g.source,
                }
                for g in self.groups
            ],
            "total_device_hours": sum(known) if known or not self.groups else None,
            "groups_not_estimated": len(self.groups) - len(known),
            "wall_hours": {str(n): hours for n, hours in self.walls.items()} if known or not self.groups else None,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite.name,
            "results": str(self.results),
            "states": self.counts(),
            "cells": self.cell_rows(),
            "pretrain": self.stage_rows(),
            "estimate": self.estimate_document(),
            "searches": [search.to_json() for search in self.searches],
        }

    def to_csv(self) -> str:
        """One row per pretraining stage (task `pretrain:NAME`, no index), then one per cell."""
        stages = [
            {
                "task": f"pretrain:{p['name']}",
                "backbone": p["backbone"],
                "strategy": "full",
                "seed": p["seed"],
                "key": p["key"],
                "state": p["state"],
                "device_hours": p["device_hours"],
                "estimate_from": p["estimate_from"],
            }
            for p in self.stage_rows()
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=PLAN_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(stages + self.cell_rows())
        return buffer.getvalue()


def make_plan(
    suite: Suite,
    registry: Registry,
    selected: CellFilter | None,
    *,
    device: str,
    tflops: float | None = None,
    calibrate: bool = False,
    progress: Callable[[str], None] | None = None,
    before_estimate: Callable[[], None] | None = None,
) -> Plan:
    """The grid of `suite` (the cells `selected` keeps and those they need), each cell's state in its
    results directory, and the estimate of what is left to run on `device`. `progress` hears the
    calibration's steps; `before_estimate` is called once before estimating, when there is work to run."""
    store = Store(suite.output_dir())
    grid = plan_cells(suite, registry)
    numbers = {cell.key: i for i, cell in enumerate(grid, 1)}
    cells = [
        PlannedCell(
            numbers[cell.key],
            cell,
            "skipped" if cell.skip_reason else "done" if store.is_done(cell.key, cell.keep_model) else "to run",
        )
        for cell in select_cells(grid, selected, suite.source)
    ]
    todo = [planned.cell for planned in cells if planned.state == "to run"]
    searches = plan_searches(suite, registry) if not selected else []
    stages = _stages(suite, registry, store, cells, todo, bool(selected), {p.pretrain for p in searches if p.pretrain})
    to_pretrain = [s.stage for s in stages if s.state == "to run"]
    throughput = device_throughput(tflops, device)
    if todo and before_estimate is not None:
        before_estimate()
    groups = estimate(to_pretrain + todo, registry, store, device, calibrate, throughput, progress) if todo else []
    jobs = cell_jobs(groups, to_pretrain + todo, {s.spec.name: s.stage.key for s in stages})
    walls = {slots: wall_hours(jobs, slots) for slots in SLOTS}
    planned = tuple(_planned_search(p, registry, store, device, calibrate, throughput, progress) for p in searches)
    return Plan(suite, store.root, len(grid), selected, cells, stages, groups, throughput, walls, planned)


def _planned_search(
    plan: SearchPlan,
    registry: Registry,
    store: Store,
    device: str,
    calibrate: bool,
    throughput: Throughput,
    progress: Callable[[str], None] | None,
) -> PlannedSearch:
    """A search's state from its summary, and the cost of one of its cells at the strategy's base setting."""
    summary = read_summary(store.root, plan.key) or {}
    done = sum(t.get("state") in ("complete", "pruned", "fail") for t in summary.get("trials", []))
    best = summary.get("best") if summary.get("finished") else None
    seeds = plan.suite.seeds
    finals_done = 0
    if best is not None:
        values = {path: best["params"][path] for path in plan.spec.space}
        finals = [plan.cell(registry, values, seed, "") for seed in seeds]
        finals_done = sum(store.is_done(c.key, c.keep_model) for c in finals)
    sample = plan.cell(registry, {}, plan.spec.trial_seed, "")
    estimated = estimate([sample], registry, store, device, calibrate, throughput, progress)
    hours = estimated[0].device_hours if estimated else None
    task, backbone, strategy = plan.labels
    return PlannedSearch(
        task, backbone, strategy, plan.spec.method, plan.spec.budget(), done, len(seeds), finals_done, hours
    )


def _stages(
    suite: Suite,
    registry: Registry,
    store: Store,
    cells: list[PlannedCell],
    todo: list[Cell],
    selected: bool,
    searched: set[str],
) -> list[PlannedStage]:
    """The pretraining stages (with --only, those of the selected cells) and whether each is cached or
    needed (by a cell to run, or by a search: `searched`)."""
    needed = {cell.pretrain for cell in todo} | searched
    used = {planned.cell.pretrain for planned in cells}
    stages = []
    for spec in suite.pretrain:
        if selected and spec.name not in used:
            continue
        stage = pretrain_cell(spec, suite, registry)
        state = "to run" if spec.name in needed else "not needed"
        stages.append(PlannedStage(spec, stage, "done" if store.checkpoint_path(stage.key).is_file() else state))
    return stages

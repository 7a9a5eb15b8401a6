"""Driving a suite run: plan its jobs, tidy and record the store, start the loggers and the executor,
and collect what every job became; one failure never stops a suite."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.cell import Cell
from harness.components import Executor
from harness.devices import resolve_device
from harness.events import CellFinished, Observer, RunFinished, RunStarted
from harness.grid import plan_cells, pretrain_cell
from harness.job import Job, JobOutcome
from harness.progress import HookRelay
from harness.registry import Registry, default_registry
from harness.result import CellResult, RunSummary
from harness.scheduler import Scheduler
from harness.search import SearchRun, plan_searches
from harness.selection import CellFilter, select_cells
from harness.settings import Suite
from harness.store import Store, manifest_runs
from harness.worker import run_job_safely


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def plan_jobs(
    suite: Suite,
    registry: Registry,
    cells: list[Cell],
    store: Store,
    planned_at: str,
    *,
    fresh: bool = False,
    portable: bool = False,
    searched_stages: tuple[str, ...] = (),
) -> list[Job]:
    """Jobs for the cells not done yet (all with `fresh`) and the pretraining stages they need, stages first."""
    todo = cells if fresh else [c for c in cells if not store.is_done(c.key, c.keep_model)]
    common = job_fields(suite, registry, store, planned_at, fresh=fresh, portable=portable)
    stages = {spec.name: pretrain_cell(spec, suite, registry) for spec in suite.pretrain}
    needed = {c.pretrain for c in todo if c.pretrain and not c.skip_reason} | set(searched_stages)
    jobs = [
        Job(stage, pretraining=True, **common)  # type: ignore[arg-type]
        for name, stage in stages.items()
        if name in needed and (fresh or not store.is_pretrained(stage.key))
    ]
    for cell in todo:
        needs = []
        if cell.pretrain and not cell.skip_reason:
            needs.append(stages[cell.pretrain].key)
        if not cell.skip_reason:
            needs += cell.needs
        jobs.append(Job(cell, needs=tuple(needs), **common))  # type: ignore[arg-type]
    return jobs


def job_fields(
    suite: Suite, registry: Registry, store: Store, planned_at: str, *, fresh: bool, portable: bool
) -> dict[str, Any]:
    """What every job of a run shares: the store, the device, the plugins other processes rebuild."""
    return {
        "store": str(store.root),
        "device": suite.device,
        "plugins": registry.portable() if portable else (),
        "entry_points": registry.entry_points,
        "planned_at": planned_at,
        "fresh": fresh,
    }


def _labels(cell: Cell) -> dict[str, Any]:
    return {"task": cell.task, "backbone": cell.backbone, "strategy": cell.strategy, "setting": cell.setting}


def _tidy(store: Store, observer: Observer) -> None:
    """Before a run: remove stale temporary files, move corrupt documents aside, name the newer ones.

    Nothing here is needed to run, so a folder it cannot change (read-only) is only reported.
    """
    for path in store.remove_stale_tmp():
        observer.message(f"removed {path}: a temporary file left by a killed `bench run`")
    for folder in (store.cells_dir, store.pretrain_dir):
        for path in sorted(folder.glob("*.json")):
            problem = store.problem(path)
            if problem is None:
                continue
            if problem.kind == "newer":
                observer.message(f"{path}: {problem.reason}; it is kept as it is and its cell is not run")
                continue
            try:
                moved = store.move_aside(path)
            except OSError as exc:
                observer.message(f"{path} is corrupt ({problem.reason}); cannot move it aside: {exc.strerror or exc}")
                continue
            observer.message(f"{path} is corrupt ({problem.reason}); moved to {moved}, its cell is computed again")


def _previous_runs(store: Store, observer: Observer) -> list[dict[str, Any]]:
    """The runs the manifest records; an unreadable manifest is moved aside (and reported)."""
    read = store.read_manifest()
    if read.problem is None:
        return manifest_runs(read.data)
    problem = read.problem
    try:
        moved = store.move_aside(problem.path)
        observer.message(f"{problem}; moved to {moved}, a new manifest is written")
    except OSError as exc:
        observer.message(f"{problem}; cannot move it aside: {exc.strerror or exc}")
    return []


def _record_run(runs: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run history with `run` added; a run of the same cells as the last one (a resume) replaces it."""
    if runs and runs[-1].get("cells") == run["cells"] and runs[-1].get("labels") == run["labels"]:
        return [*runs[:-1], run]
    return [*runs, run]


def run_suite(
    suite: Suite,
    registry: Registry | None = None,
    *,
    fresh: bool = False,
    observer: Observer | None = None,
    executor: Executor | None = None,
    only: CellFilter | None = None,
) -> RunSummary:
    """Run every cell not already `ok` in the store, as jobs on the suite's executor (or `executor`).

    `only` (`bench run --only`) keeps the cells it selects and the cells whose models they need
    (teachers, inputs).

    Results are stored as each cell finishes, by whichever process ran it. A result that cannot be
    written (a full disk) stops the run: `RunSummary.stopped` says why, everything stored is kept.
    """
    registry = registry or default_registry()
    # every event goes to the `bench_*` hooks (the progress display, loggers), and to `observer` if given
    observer = HookRelay(registry.pm.hook, observer)
    resolve_device(suite.device, amp=False)  # fail early, before anything runs
    cells = select_cells(plan_cells(suite, registry), only, suite.source)
    store = Store(suite.output_dir())
    planned_at = _now()
    _tidy(store, observer)
    runs = _previous_runs(store, observer)
    executor = executor or registry.create("executor", suite.executor.name, suite.executor.options)
    searches = _searches(suite, registry, store, observer, fresh=fresh, only=bool(only))
    stages = tuple(s.plan.pretrain for s in searches if s.plan.pretrain)
    jobs = plan_jobs(
        suite, registry, cells, store, planned_at, fresh=fresh, portable=executor.portable, searched_stages=stages
    )
    for path, problem in store.bad_checkpoints.items():
        observer.message(f"{problem}; {path.name} is built again")
    todo = sum(not job.pretraining for job in jobs)
    summary = RunSummary(store.root, len(cells), len(cells) - todo)
    run = _run_record(suite, cells, planned_at)
    try:
        store.write_manifest(_manifest(suite, run, runs))
    except OSError as exc:
        why = f"cannot write {store.manifest_path}: {exc.strerror or exc}"
        if jobs or searches:
            summary.stopped = f"{why}; stopped before running anything"
            return summary
        observer.message(f"{why}; nothing to run, so nothing is lost")
    loggers = _start_loggers(suite, registry, store.root)
    try:
        common = job_fields(suite, registry, store, planned_at, fresh=fresh, portable=executor.portable)
        searching = Searching(searches, Found(store, suite, run, runs, observer, common))
        jobs += searching.start()  # a resumed search tells its stored trials first
        searched = sum(search.plan.spec.budget() + len(suite.seeds) for search in searches)
        summary.total += searched
        summary.reused += searching.reused
        observer.emit(RunStarted(suite=suite, cells=cells, done=summary.reused, searched=searched))
        _execute(jobs, executor, store, registry, observer, summary, searching)
        if summary.stopped is not None:
            kept = sum(store.load(c.key) is not None for c in cells)
            summary.stopped = f"{summary.stopped}; stopped, {kept} finished cells are kept"
        if (jobs or searches) and summary.stopped is None:
            _finish_manifest(store, run, observer)
        observer.emit(RunFinished(suite=suite, summary=summary))
    finally:
        for logger in loggers:  # also after an interruption: a logger's files and runs are closed
            with contextlib.suppress(Exception):
                logger.close()
            registry.pm.unregister(logger)
    return summary


def _searches(
    suite: Suite, registry: Registry, store: Store, observer: Observer, *, fresh: bool, only: bool
) -> list[SearchRun]:
    """The suite's searches for this run (none with `--only`, which selects planned cells)."""
    searches = [SearchRun(plan, registry, store, fresh=fresh) for plan in plan_searches(suite, registry)]
    if only and searches:
        observer.message("--only runs no search: the searched strategies are left out of this run")
        return []
    return searches


def _run_record(suite: Suite, cells: list[Cell], planned_at: str) -> dict[str, Any]:
    """This run as the manifest's history records it."""
    return {
        "started_at": planned_at,
        "source": suite.source,
        "settings": suite.model_dump(mode="json"),
        "cells": [c.key for c in cells],
        # the suite's current labels: a cell reused from an earlier run may have been labelled differently
        "labels": {c.key: _labels(c) for c in cells},
    }


def _manifest(suite: Suite, run: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "suite": suite.name,
        "source": suite.source,
        "settings": run["settings"],
        "cells": run["cells"],
        "labels": run["labels"],
        "started_at": run["started_at"],
        "runs": _record_run(runs, run),
    }


@dataclass
class Found:
    """What a search's new cells need: jobs like the planned ones, and a place in the manifest."""

    store: Store
    suite: Suite
    run: dict[str, Any]
    runs: list[dict[str, Any]]
    observer: Observer
    #: `job_fields` of this run
    common: dict[str, Any]

    def job(self, cell: Cell) -> Job:
        needs = (cell.settings.backbone.weights.partition("@")[2],) if cell.pretrain else ()
        return Job(cell, needs=needs, **self.common)

    def record(self, cells: list[Cell]) -> None:
        """Final cells are the suite's cells: the manifest lists them so the report shows them."""
        self.run["cells"] = [*self.run["cells"], *(c.key for c in cells if c.key not in self.run["cells"])]
        self.run["labels"] = {**self.run["labels"], **{c.key: _labels(c) for c in cells}}
        try:
            self.store.write_manifest(_manifest(self.suite, self.run, self.runs))
        except OSError as exc:
            self.observer.message(f"cannot write {self.store.manifest_path}: {exc.strerror or exc}")


@dataclass
class Searching:
    """The suite's searches while it runs: which jobs they start, and what each trial's outcome asks next."""

    searches: list[SearchRun]
    found: Found

    def start(self) -> list[Job]:
        return [job for search in self.searches for job in self._jobs(search, search.start())]

    def _jobs(self, search: SearchRun, cells: list[Cell]) -> list[Job]:
        if cells and cells is search.finals:
            self.found.record(cells)
            cells = search.finals_to_run()
        return [self.found.job(cell) for cell in cells]

    @property
    def reused(self) -> int:
        return sum(search.reused for search in self.searches)

    def outcome(self, job: Job, result: CellResult) -> list[Job]:
        for search in self.searches:
            if search.owns(job.key):
                return self._jobs(search, search.finished(job.cell, result))
        return []


def _execute(
    jobs: list[Job],
    executor: Executor,
    store: Store,
    registry: Registry,
    observer: Observer,
    summary: RunSummary,
    searching: Searching | None = None,
) -> None:
    """Run the jobs on the executor, counting what became of each in `summary` (`stopped`: why it stopped);
    the searches add their trials and final cells as they go."""

    def on_outcome(job: Job, outcome: JobOutcome) -> None:
        result = outcome.result
        assert result is not None
        if searching is not None:
            for new in searching.outcome(job, result):
                scheduler.add(new)
        if job.pretraining:
            summary.pretrained += outcome.how == "ran"
        else:
            summary.statuses[result.status] += 1
            if outcome.how == "ran":
                summary.per_slot[outcome.slot] += 1
            else:
                summary.elsewhere += 1
        observer.emit(CellFinished(cell=job.cell, result=result, slot=outcome.slot))

    scheduler = Scheduler(jobs, executor, store, lambda job: None, on_outcome)
    try:
        executor.start(observer, lambda job, events: run_job_safely(job, registry, events))
        summary.executor = executor.describe()
        scheduler.run()
    finally:
        executor.close()
    summary.stopped = scheduler.stopped


def _start_loggers(suite: Suite, registry: Registry, output: Path) -> list[Any]:
    """The suite's loggers, registered as plugins for this run."""
    started = []
    for spec in suite.loggers:
        logger = registry.get("logger", spec.name)(spec.options, output=output)  # type: ignore[call-arg]
        registry.pm.register(logger, name=f"logger:{spec.name}:{id(logger)}")
        started.append(logger)
    return started


def _finish_manifest(store: Store, run: dict[str, Any], observer: Observer) -> None:
    """Mark this run finished, in the manifest as it is now (a concurrent run may have written it since)."""
    manifest = store.manifest()
    finished = _now()
    runs = manifest_runs(manifest)
    mine = [r for r in runs if r.get("started_at") == run["started_at"]]
    if mine:
        mine[-1]["finished_at"] = finished
    else:
        runs = _record_run(runs, {**run, "finished_at": finished})
    manifest["runs"] = runs
    if manifest.get("started_at") == run["started_at"]:
        manifest["finished_at"] = finished
    try:
        store.write_manifest(manifest)
    except OSError as exc:
        observer.message(f"cannot write {store.manifest_path}: {exc.strerror or exc}; the results are kept")

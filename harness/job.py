"""Jobs: a cell (or a pretraining stage) as a plain, picklable spec that any process can run.

`plan_jobs` turns a suite's cells into jobs with explicit dependencies (a pretraining stage's
checkpoint, a teacher cell's saved model); `run_job` runs one in whatever process it lands in,
claims it in the store first, and writes its result to the store. Every executor calls
`run_job`, so a cell behaves the same in-process, in a worker process or on a Ray node.
"""

from __future__ import annotations

import os
import socket
import traceback
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from harness.cell import Cell, pretrain_cell
from harness.progress import Observer
from harness.registry import PluginRef, Registry, registry_for
from harness.result import CellResult
from harness.store import NotOverwritten, Store, WriteFailed
from harness.suite import Suite


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to run one cell: its resolved settings, where the store is, which device."""

    cell: Cell
    #: the results directory (on a filesystem every worker sees)
    store: str
    #: device to run on: 'cpu', 'cuda', 'cuda:N', 'auto' (executors may replace it per slot)
    device: str
    #: keys of the jobs whose artefacts this one needs
    needs: tuple[str, ...] = ()
    #: a pretraining stage: its backbone is saved as a checkpoint, its result under pretrain/
    pretraining: bool = False
    #: plugins beyond the built-ins, rebuilt by import in other processes
    plugins: tuple[PluginRef, ...] = ()
    entry_points: bool = True
    #: the executor's cap on CPU threads (cores shared out between workers); None: the cell's own setting
    threads: int | None = None
    #: when the run planned this job: a result started since then is a concurrent run's, and is kept
    planned_at: str = ""
    #: recompute even an `ok` result from an earlier run (`bench run --fresh`)
    fresh: bool = False

    @property
    def key(self) -> str:
        return self.cell.key

    def on(self, device: str, threads: int | None = None) -> Job:
        """This job placed on a slot's device, with the slot's share of CPU threads."""
        return replace(self, device=device, threads=threads if threads is not None else self.threads)


How = Literal["ran", "reused", "claimed"]


@dataclass
class JobOutcome:
    """What became of a job: `ran` (result stored), `reused` (already done), `claimed` (another worker has it)."""

    key: str
    how: How
    result: CellResult | None = None
    #: the result is in the store (False when the worker died and the driver must write it)
    stored: bool = True
    #: the executor slot that ran it
    slot: int = 0
    #: why the suite must stop: the result could not be written (a full disk, a read-only folder)
    stop: str | None = None


def is_done(job: Job, store: Store) -> bool:
    """The job's result is `ok` in the store, with the artefact other jobs need from it."""
    if job.pretraining:
        return store.is_pretrained(job.key)
    return store.is_done(job.key, job.cell.keep_model)


def load_result(job: Job, store: Store) -> CellResult | None:
    return store.load_pretrain(job.key) if job.pretraining else store.load(job.key)


def result_path(job: Job, store: Store) -> Path:
    return store.pretrain_dir / f"{job.key}.json" if job.pretraining else store.cell_path(job.key)


def save_result(job: Job, store: Store, result: CellResult) -> None:
    """Write a job's result where its kind of result lives (cells/ or pretrain/)."""
    if job.pretraining:
        store.save_pretrain(result)
    else:
        store.save(result)


def store_result(job: Job, store: Store, result: CellResult) -> str | None:
    """`save_result`, never raising for the store: None when written, else why the suite must stop.

    A document a newer bench wrote is left alone and the result becomes `skipped` (the suite goes
    on); a failed write (a full disk, a read-only folder) fails the result and stops the suite.
    """
    try:
        save_result(job, store, result)
    except NotOverwritten as exc:
        result.status, result.reason, result.traceback = "skipped", str(exc), None
    except OSError as exc:
        why = f"cannot write {result_path(job, store)}: {exc.strerror or exc}"
        result.status, result.reason, result.traceback = "failed", why, None
        return why
    return None


def newer_document(job: Job, store: Store) -> CellResult | None:
    """A `skipped` result when the job's document was written by a newer bench: it is not run, not overwritten."""
    path = result_path(job, store)
    problem = store.problem(path)
    if problem is None or problem.kind != "newer":
        return None
    return CellResult.for_cell(job.cell, "skipped", reason=f"{path}: {problem.reason}; not overwritten")


def reusable(job: Job, store: Store) -> CellResult | None:
    """A stored result this run takes instead of running the job: one from a concurrent run (any
    status: it ran after this run planned), or an `ok` one from before (unless `fresh`)."""
    result = load_result(job, store)
    if result is None:
        return None
    if job.planned_at and result.started_at and _instant(result.started_at) >= _instant(job.planned_at):
        return result
    return result if not job.fresh and is_done(job, store) else None


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def plan_jobs(
    suite: Suite,
    registry: Registry,
    cells: list[Cell],
    store: Store,
    planned_at: str,
    *,
    fresh: bool = False,
    portable: bool = False,
) -> list[Job]:
    """Jobs for the cells not done yet (all with `fresh`) and the pretraining stages they need, stages first."""
    todo = cells if fresh else [c for c in cells if not store.is_done(c.key, c.keep_model)]
    plugins = registry.portable() if portable else ()
    common = {
        "store": str(store.root),
        "device": suite.device,
        "plugins": plugins,
        "entry_points": registry.entry_points,
        "planned_at": planned_at,
        "fresh": fresh,
    }
    stages = {spec.name: pretrain_cell(spec, suite, registry) for spec in suite.pretrain}
    needed = {c.pretrain for c in todo if c.pretrain and not c.skip_reason}
    jobs = [
        Job(stage, pretraining=True, **common)  # type: ignore[arg-type]
        for name, stage in stages.items()
        if name in needed and (fresh or not store.is_pretrained(stage.key))
    ]
    for cell in todo:
        needs = []
        if cell.pretrain and not cell.skip_reason:
            needs.append(stages[cell.pretrain].key)
        if cell.teacher and not cell.skip_reason:
            needs.append(cell.teacher)
        jobs.append(Job(cell, needs=tuple(needs), **common))  # type: ignore[arg-type]
    return jobs


def run_job(job: Job, registry: Registry | None = None, observer: Observer | None = None) -> JobOutcome:
    """Claim the job, run it unless it is done already, store its result; never raises for a cell's problem.

    Module-level and dependent only on `job`, so it runs the same in any process.
    """
    from harness.runner import run_cell, save_state  # the runner imports this module

    store = Store(job.store)
    claim = store.claims.acquire(job.key)
    if claim is None:
        return JobOutcome(job.key, "claimed")
    try:
        done = reusable(job, store)
        if done is not None:  # another run finished it after we planned
            return JobOutcome(job.key, "reused", done)
        newer = newer_document(job, store)
        if newer is not None:
            return JobOutcome(job.key, "ran", newer)
        registry = registry or registry_for(job.plugins, job.entry_points)
        checkpoint = store.checkpoint_path(job.key)
        keep = (lambda model: save_state(model.backbone, checkpoint)) if job.pretraining else None
        with store.claims.heartbeat(claim):
            try:
                result = run_cell(job.cell, registry, job.device, store, observer, keep, job.threads)
            except WriteFailed as exc:  # its checkpoint or model could not be written: stop the suite
                result = CellResult.for_cell(job.cell, "failed", reason=exc.strerror)
                return JobOutcome(job.key, "ran", result, stop=store_result(job, store, result) or exc.strerror)
            stop = store_result(job, store, result)
        return JobOutcome(job.key, "ran", result, stop=stop)
    finally:
        store.claims.release(claim)


def crashed(job: Job, why: str) -> JobOutcome:
    """The outcome of a job whose worker died or raised outside the cell: `failed`, not yet stored."""
    result = CellResult.for_cell(job.cell, "failed", reason=why)
    result.provenance = {"host": socket.gethostname(), "driver_pid": os.getpid()}
    return JobOutcome(job.key, "ran", result, stored=False)


def run_job_safely(job: Job, registry: Registry | None = None, observer: Observer | None = None) -> JobOutcome:
    """`run_job`, with anything it raises (a store it cannot write, a plugin it cannot import) as a failed outcome."""
    try:
        return run_job(job, registry, observer)
    except Exception as exc:
        outcome = crashed(job, f"{type(exc).__name__}: {exc}")
        assert outcome.result is not None
        outcome.result.traceback = traceback.format_exc()
        return outcome

"""Jobs: a cell (or a pretraining stage) as a plain, picklable spec that any process can run.

A job names the jobs whose artefacts it needs (a pretraining stage's checkpoint, a teacher cell's
saved model); `harness.driver.plan_jobs` makes them, `harness.worker.run_job_safely` runs one in
whatever process it lands in. Here: the records, and what the store says of a job.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from harness.cell import Cell
from harness.plugin_ref import PluginRef
from harness.result import CellResult
from harness.store import NotOverwritten, Store


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


def crashed(job: Job, why: str) -> JobOutcome:
    """The outcome of a job whose worker died or raised outside the cell: `failed`, not yet stored."""
    result = CellResult.for_cell(job.cell, "failed", reason=why)
    result.provenance = {"host": socket.gethostname(), "driver_pid": os.getpid()}
    return JobOutcome(job.key, "ran", result, stored=False)


def clear_dead_claim(job: Job, pid: int | None = None) -> None:
    """Remove the claim a worker known to be dead left on `job`: process `pid` on this host, or whoever holds it."""
    Store(job.store).claims.clear(job.key, pid)

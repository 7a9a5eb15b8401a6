"""Running one job in whatever process it lands in: the driver, a worker process, a Ray task, a cluster job.

Every executor calls `run_job_safely`, so a cell behaves the same everywhere: the job is claimed
in the store first, run unless it is done already, and its result written to the store.
"""

from __future__ import annotations

import traceback

from harness.events import Observer
from harness.job import Job, JobOutcome, crashed, newer_document, reusable, store_result
from harness.registry import Registry, registry_for
from harness.result import CellResult
from harness.runner import run_cell, save_state
from harness.store import Store, WriteFailed


def run_job(job: Job, registry: Registry | None = None, observer: Observer | None = None) -> JobOutcome:
    """Claim the job, run it unless it is done already, store its result; never raises for a cell's problem.

    Module-level and dependent only on `job`, so it runs the same in any process.
    """
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


def run_job_safely(job: Job, registry: Registry | None = None, observer: Observer | None = None) -> JobOutcome:
    """`run_job`, with anything it raises (a store it cannot write, a plugin it cannot import) as a failed outcome."""
    try:
        return run_job(job, registry, observer)
    except Exception as exc:
        outcome = crashed(job, f"{type(exc).__name__}: {exc}")
        assert outcome.result is not None
        outcome.result.traceback = traceback.format_exc()
        return outcome

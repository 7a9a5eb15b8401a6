"""Scheduling: which job may run now, by its dependencies and by claims, never by list order.

A job is submitted when every job it needs is `ok` (in this run or in the store) and a slot is
free. A job whose dependency failed is recorded `failed` with the dependency's reason. A job
another run has claimed is watched: when that run finishes it, its result is taken as it is; when
the claim goes stale (the owner died), the job is submitted again and takes the claim over.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.components import Executor
from harness.job import Job, JobOutcome, is_done, reusable, store_result
from harness.result import CellResult
from harness.store import Store

#: how often jobs claimed by another run are checked, in seconds
POLL_SECONDS = 2.0


def _what(job: Job) -> str:
    if job.pretraining:
        return f"pretraining stage {job.cell.task.removeprefix('pretrain:')!r}"
    return f"teacher cell {job.cell.label}"


class Scheduler:
    """Feeds an executor the jobs that are ready and reports every outcome once."""

    def __init__(
        self,
        jobs: list[Job],
        executor: Executor,
        store: Store,
        on_submit: Callable[[Job], None],
        on_outcome: Callable[[Job, JobOutcome], None],
        poll: float = POLL_SECONDS,
    ) -> None:
        self.jobs = {job.key: job for job in jobs}
        self.executor, self.store = executor, store
        self.on_submit, self.on_outcome = on_submit, on_outcome
        self.poll = poll
        self.finished: dict[str, CellResult] = {}
        self.pending = dict(self.jobs)
        self.running: set[str] = set()
        #: claimed by another run: key -> when we last looked
        self.elsewhere: dict[str, float] = {}
        #: why no more jobs are submitted (a result could not be written), or None
        self.stopped: str | None = None

    def add(self, job: Job) -> None:
        """A job made while the suite runs (a search's next trials, its final cells)."""
        self.jobs[job.key] = job
        self.finished.pop(job.key, None)
        if job.key not in self.running:
            self.pending[job.key] = job

    def run(self) -> None:
        while self.pending or self.running or self.elsewhere:
            self._fail_orphans()
            self._submit_ready()
            if not self.running and not self.elsewhere and self.pending:
                self._fail_unreachable()
                continue
            timeout = self.poll if self.elsewhere else None
            for outcome in self.executor.wait(timeout) if self.running else self._sleep(timeout):
                self._handle(outcome)
            self._check_elsewhere()

    def _sleep(self, seconds: float | None) -> list[JobOutcome]:
        time.sleep(seconds or self.poll)
        return []

    def _need_state(self, key: str) -> str | None:
        """'ok', 'waiting', or the reason the needed job failed."""
        result = self.finished.get(key)
        if result is not None:
            return "ok" if result.status == "ok" else f"{result.status}: {result.reason}"
        job = self.jobs.get(key)
        if job is None:  # not part of this run: it must be done already
            done = self.store.is_pretrained(key) or self.store.is_done(key, needs_model=True)
            return "ok" if done else "its result is neither in the store nor planned in this run"
        return "waiting"

    def _fail_orphans(self) -> None:
        for key, job in list(self.pending.items()):
            for need in job.needs:
                state = self._need_state(need)
                if state not in ("ok", "waiting"):
                    del self.pending[key]
                    what = _what(self.jobs[need]) if need in self.jobs else f"needed job {need}"
                    self._record_failure(job, f"{what} failed: {state}")
                    break

    def _fail_unreachable(self) -> None:
        """Jobs left waiting on nothing that can still finish (a dependency cycle cannot arise from a suite)."""
        for key, job in list(self.pending.items()):
            del self.pending[key]
            self._record_failure(job, f"dependencies never became ready: {', '.join(job.needs)}")

    def _record_failure(self, job: Job, reason: str) -> None:
        result = CellResult.for_cell(job.cell, "failed", reason=reason)
        self._handle(JobOutcome(job.key, "ran", result, stored=False))

    def _submit_ready(self) -> None:
        for key, job in list(self.pending.items()):
            if len(self.running) >= self.executor.slots:
                return
            if all(self._need_state(need) == "ok" for need in job.needs):
                del self.pending[key]
                self.running.add(key)
                self.on_submit(job)
                self.executor.submit(job)

    def _handle(self, outcome: JobOutcome) -> None:
        job = self.jobs[outcome.key]
        self.running.discard(outcome.key)
        if outcome.how == "claimed":
            if self.stopped is None:
                self.elsewhere[outcome.key] = time.monotonic()
            return
        assert outcome.result is not None
        if not outcome.stored:
            outcome.stop = store_result(job, self.store, outcome.result) or outcome.stop
        self.finished[outcome.key] = outcome.result
        self.on_outcome(job, outcome)
        if outcome.stop is not None:
            self.stop(outcome.stop)

    def stop(self, reason: str) -> None:
        """Submit nothing more (the jobs running now finish): the store cannot take results."""
        if self.stopped is None:
            self.stopped = reason
        self.pending.clear()
        self.elsewhere.clear()

    def _check_elsewhere(self) -> None:
        now = time.monotonic()
        for key, seen in list(self.elsewhere.items()):
            if now - seen < self.poll:
                continue
            self.elsewhere[key] = now
            job = self.jobs[key]
            result = reusable(job, self.store)
            if result is not None and (result.status != "ok" or is_done(job, self.store)):
                del self.elsewhere[key]
                self.finished[key] = result
                self.on_outcome(job, JobOutcome(key, "reused", result))
                continue
            holder = self.store.claims.holder(key)
            if holder is None or self.store.claims.stale_reason(holder) is not None:
                del self.elsewhere[key]
                self.pending[key] = job  # run_job takes a stale claim over

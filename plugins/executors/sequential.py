"""`sequential`: run jobs one after another in this process (the default)."""

from __future__ import annotations

from harness import Executor, hookimpl
from harness.job import Job, JobOutcome, run_job_safely
from harness.progress import Observer
from harness.registry import Registry


class Sequential(Executor):
    """One job at a time, in this process, with this process's registry and progress display."""

    name = "sequential"

    def start(self, observer: Observer, registry: Registry) -> None:
        self.observer, self.registry = observer, registry
        self.queued: list[Job] = []

    def submit(self, job: Job) -> None:
        self.queued.append(job)

    def wait(self, timeout: float | None) -> list[JobOutcome]:
        if not self.queued:
            return []
        return [run_job_safely(self.queued.pop(0), self.registry, self.observer.slot(0))]


@hookimpl
def bench_executors() -> list[type[Executor]]:
    return [Sequential]

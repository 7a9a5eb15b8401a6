"""`sequential`: run jobs one after another in this process (the default)."""

from __future__ import annotations

from harness import Executor, Job, JobOutcome, JobRunner, Observer, hookimpl


class Sequential(Executor):
    """One job at a time, in this process, with this process's registry and progress display."""

    name = "sequential"

    def start(self, observer: Observer, run_here: JobRunner) -> None:
        self.observer, self.run_here = observer, run_here
        self.queued: list[Job] = []

    def submit(self, job: Job) -> None:
        self.queued.append(job)

    def wait(self, timeout: float | None) -> list[JobOutcome]:
        if not self.queued:
            return []
        return [self.run_here(self.queued.pop(0), self.observer.slot(0))]


@hookimpl
def bench_executors() -> list[type[Executor]]:
    return [Sequential]

"""`processes`: one worker process per device slot on this machine (one per GPU, or N CPU workers).

Workers are started with the `spawn` method (CUDA cannot be forked), each with its own
`CUDA_VISIBLE_DEVICES` so a worker sees exactly one GPU, and talk to the driver over their own
pipe, so a worker that dies (killed for memory, a segfault) breaks nothing but itself: its cell is
recorded `failed` with the reason, a new worker takes the slot, and the suite goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from multiprocessing.connection import Connection, wait
from typing import Annotated, Any

from pydantic import Field

from harness import (
    Executor,
    Forwarding,
    Job,
    JobOutcome,
    JobRunner,
    Observer,
    Options,
    clear_dead_claim,
    crashed,
    deliver,
    hookimpl,
    run_job_safely,
    usable_cores,
)


class ProcessesOptions(Options):
    devices: list[Annotated[str, Field(pattern=r"^(cpu|cuda:\d+)$")]] | None = Field(
        None, description="one worker per entry, e.g. ['cuda:0', 'cuda:1']; default: every visible GPU"
    )
    slots: Annotated[int, Field(ge=1, le=512)] | None = Field(
        None, description="CPU workers when there are no devices (default: one per usable core)"
    )
    threads: Annotated[int, Field(ge=1, le=512)] | None = Field(
        None, description="CPU threads per worker (default: the usable cores shared out between workers)"
    )


def _worker(slot: int, environment: dict[str, str], connection: Connection) -> None:
    """A worker's life: set its environment before torch touches CUDA, then run jobs until told to stop."""
    os.environ.update(environment)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what an interruption means
    observer = Forwarding(connection.send)
    while True:
        try:
            job = connection.recv()
        except EOFError:  # the driver is gone (killed): nothing more to do
            return
        if job is None:
            return
        outcome = run_job_safely(job, observer=observer)  # stored by the job itself, driver or not
        outcome.slot = slot
        try:
            connection.send(("done", outcome))
        except OSError:  # the driver is gone
            return


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the kernel's out-of-memory killer, or a kill -9)" if name == "SIGKILL" else ""
        return f"worker process died: killed by {name}{hint}"
    return f"worker process died with exit code {code}"


class _Slot:
    def __init__(self, index: int, device: str, threads: int, environment: dict[str, str]) -> None:
        self.index, self.device, self.threads, self.environment = index, device, threads, environment
        self.process: Any = None
        self.connection: Connection | None = None
        self.job: Job | None = None

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self.process = context.Process(
            target=_worker, args=(self.index, self.environment, child), name=f"bench-worker-{self.index}", daemon=True
        )
        self.process.start()
        child.close()
        self.connection = parent

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.is_alive():
            try:
                assert self.connection is not None
                self.connection.send(None)
            except OSError:
                pass
            self.process.join(timeout=5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        self.process = None


class Processes(Executor):
    """One worker process per GPU (or per CPU slot), each running one job at a time."""

    name = "processes"
    Options = ProcessesOptions
    portable = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.workers = self._plan_slots()

    def _plan_slots(self) -> list[_Slot]:
        import torch

        options: ProcessesOptions = self.options  # type: ignore[assignment]
        devices = options.devices
        if devices is None and options.slots is None and torch.cuda.is_available():
            devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if not devices:
            devices = ["cpu"] * (options.slots or usable_cores())
        threads = options.threads or max(1, usable_cores() // len(devices))
        slots = []
        for index, device in enumerate(devices):
            environment = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            if device.startswith("cuda:"):
                environment["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
                device = "cuda:0"  # the one GPU the worker sees
            else:
                environment["CUDA_VISIBLE_DEVICES"] = ""
            slots.append(_Slot(index, device, threads, environment))
        return slots

    @property
    def slots(self) -> int:
        return len(self.workers)

    def describe(self) -> str:
        gpus = [w.environment["CUDA_VISIBLE_DEVICES"] for w in self.workers if w.device != "cpu"]
        threads = self.workers[0].threads
        where = f"GPUs {', '.join(gpus)}" if gpus else f"cpu, {threads} thread{'' if threads == 1 else 's'} each"
        return f"processes: {self.slots} worker{'s' * (self.slots != 1)} ({where})"

    def start(self, observer: Observer, run_here: JobRunner) -> None:
        self.observer = observer
        for worker in self.workers:
            worker.start()

    def submit(self, job: Job) -> None:
        worker = next(w for w in self.workers if w.job is None)
        device = worker.device if job.device != "cpu" else "cpu"
        worker.job = job.on(device, worker.threads)
        assert worker.connection is not None
        worker.connection.send(worker.job)

    def wait(self, timeout: float | None) -> list[JobOutcome]:
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return []
        watched: dict[Any, _Slot] = {}
        for worker in busy:
            watched[worker.connection] = worker
            watched[worker.process.sentinel] = worker
        outcomes: list[JobOutcome] = []
        for ready in wait(list(watched), timeout):
            worker = watched[ready]
            if worker.job is None:
                continue  # already handled through its other handle
            outcome = self._receive(worker)
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _receive(self, worker: _Slot) -> JobOutcome | None:
        """Events and the outcome a worker sent; a `failed` outcome when it died."""
        assert worker.connection is not None and worker.job is not None
        try:
            while worker.connection.poll():
                message = worker.connection.recv()
                if message[0] == "event":
                    deliver(self.observer, worker.index, message[1])
                else:
                    worker.job = None
                    outcome: JobOutcome = message[1]
                    return outcome
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            return None
        job = worker.job
        assert job is not None
        worker.job = None
        worker.process.join()
        outcome = crashed(job, _describe_exit(worker.process.exitcode))
        outcome.slot = worker.index
        clear_dead_claim(job, worker.process.pid)
        worker.process = None
        worker.start()  # a fresh worker takes the slot
        return outcome

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


@hookimpl
def bench_executors() -> list[type[Executor]]:
    return [Processes]

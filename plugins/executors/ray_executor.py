"""`ray`: each job a Ray core task, on an existing cluster or a local one (the `ray` extra).

Workers write results, checkpoints and claims to the results directory themselves, as every
executor's workers do: a job needs the artefacts of the jobs before it (a pretraining checkpoint,
a teacher's model), so every node must see that directory anyway (a shared filesystem: NFS,
Lustre, a mounted bucket). Passing results back to the driver would still leave the artefacts to
share, and would lose a finished cell if the driver died; the store stays the one source of truth.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Annotated, Any

from pydantic import Field

from harness import (
    BenchError,
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
    install_hint,
    run_job_safely,
)

#: seconds between two looks for progress events while waiting for tasks
EVENT_INTERVAL = 0.2


class RayOptions(Options):
    address: str | None = Field(
        None,
        description="'auto' (the cluster this machine belongs to), 'ray://host:10001', or none: start a local Ray",
    )
    num_gpus: Annotated[float, Field(ge=0, le=64)] | None = Field(
        None, description="GPUs per cell, fractions allowed (default: 1 when the cluster has GPUs, else 0)"
    )
    cpus_per_cell: Annotated[float, Field(gt=0, le=512)] = Field(
        1, description="CPUs per cell (and its torch threads); what a cell is scheduled on when there are no GPUs"
    )
    init: dict[str, Any] = Field(
        {}, description="extra arguments of ray.init for a local Ray, e.g. num_cpus, num_gpus, resources"
    )


def _run_remote(job: Job, events: Any = None, slot: int = 0) -> JobOutcome:
    """What a Ray task runs: the same function as every other executor; its progress events go to
    the driver through `events` (a Ray queue), as a worker process's go through its pipe."""
    observer = None
    if events is not None:
        observer = Forwarding(lambda message: events.put_nowait((slot, message[1])))
    return run_job_safely(job, observer=observer)


class Ray(Executor):
    """Ray core tasks, one cell per task, as many in flight as the cluster has room for."""

    name = "ray"
    Options = RayOptions
    portable = True

    def start(self, observer: Observer, run_here: JobRunner) -> None:
        try:
            import ray
        except ImportError:
            raise BenchError(f'executor "ray" needs Ray: {install_hint("ray")}') from None
        self.ray, self.observer = ray, observer
        options: RayOptions = self.options  # type: ignore[assignment]
        self.started_here = not ray.is_initialized()
        if self.started_here:
            arguments: dict[str, Any] = {"address": options.address, "log_to_driver": False}
            if options.address is None:  # a local Ray: loopback only, no dashboard
                # workers import the driver's modules (plugins named by import path) from its sys.path
                path = os.pathsep.join(p for p in sys.path if p)
                arguments.update(
                    include_dashboard=False,
                    _node_ip_address="127.0.0.1",
                    runtime_env={"env_vars": {"PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0"}},
                )
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(**{**arguments, **options.init})
        resources = ray.cluster_resources()
        gpus = options.num_gpus if options.num_gpus is not None else (1.0 if resources.get("GPU", 0) >= 1 else 0.0)
        self.gpus, self.cpus = gpus, options.cpus_per_cell
        room = resources.get("GPU", 0) / gpus if gpus else resources.get("CPU", 1) / self.cpus
        self.room = max(1, math.floor(room + 1e-9))
        self.remote = ray.remote(_run_remote).options(num_gpus=gpus, num_cpus=self.cpus, max_retries=0)
        from ray.util.queue import Queue

        # the epoch and step events of every task, for the progress display and the loggers
        self.events = Queue(actor_options={"num_cpus": 0})
        self.in_flight: dict[Any, tuple[Job, int]] = {}
        self.free = list(range(self.room))

    @property
    def slots(self) -> int:
        return getattr(self, "room", 1)

    def describe(self) -> str:
        per = f"{self.gpus:g} GPU" if self.gpus else f"{self.cpus:g} CPU"
        return f"ray: {self.slots} cells at a time ({per} each)"

    def submit(self, job: Job) -> None:
        device = job.device
        if device.startswith("cuda:"):
            device = "cuda"  # Ray gives the task its GPUs as CUDA_VISIBLE_DEVICES
        threads = max(1, int(self.cpus))
        slot = self.free.pop(0)
        self.in_flight[self.remote.remote(job.on(device, threads), self.events, slot)] = (job, slot)

    def _deliver_events(self) -> None:
        """Replay the events the tasks sent since the last call, in order."""
        from ray.util.queue import Empty

        waiting = self.events.size()
        if not waiting:
            return
        try:
            for slot, event in self.events.get_nowait_batch(waiting):
                deliver(self.observer, slot, event)
        except Empty:
            return

    def wait(self, timeout: float | None) -> list[JobOutcome]:
        if not self.in_flight:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # short waits, so the events keep flowing while the cells train
            self._deliver_events()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            step = EVENT_INTERVAL if left is None else min(EVENT_INTERVAL, left)
            ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=step)
            if ready or (left is not None and left <= step):
                break
        self._deliver_events()  # a finished task's last events come before its outcome
        outcomes = []
        for ref in ready:
            job, slot = self.in_flight.pop(ref)
            self.free.append(slot)
            try:
                outcome: JobOutcome = self.ray.get(ref)
            except Exception as exc:  # the worker died or Ray lost the task
                outcome = crashed(job, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                clear_dead_claim(job)
            outcome.slot = slot
            outcomes.append(outcome)
        return outcomes

    def close(self) -> None:
        for ref in getattr(self, "in_flight", {}):
            self.ray.cancel(ref, force=True)
        events = getattr(self, "events", None)
        if events is not None:
            with contextlib.suppress(Exception):  # the queue's actor; gone already with a local Ray
                events.shutdown(force=True)
        if getattr(self, "started_here", False):
            self.ray.shutdown()


@hookimpl
def bench_executors() -> list[type[Executor]]:
    return [Ray]

"""Strategies for executor tests, importable by worker processes (`tests.executor_plugins`).

`counted` appends its cell's key to the file named by BENCH_TEST_STARTS each time training
starts, so a test can count how often each cell trained across processes; `dies` kills its own
process with SIGKILL, as the out-of-memory killer would.
"""

from __future__ import annotations

import os
import signal

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.freezing import backbone_and_head_groups, set_trainable


class Counted(Strategy):
    """Full fine-tuning that records each start of training."""

    name = "counted"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        path = os.environ.get("BENCH_TEST_STARTS")
        if path:
            with open(path, "a") as f:
                f.write(f"{os.getpid()}\n")
        set_trainable(model, True)
        return backbone_and_head_groups(model)


class Dies(Strategy):
    """Training that never starts: the worker process is killed."""

    name = "dies"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Counted, Dies]

"""A strategy for store tests, importable by worker processes (`tests.store_plugins`).

`blocks_result` makes its own result impossible to write: it puts a folder where the cell's
document goes (the path in BENCH_TEST_BLOCK), as a full disk or a read-only folder would fail it.
"""

from __future__ import annotations

import os

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.freezing import backbone_and_head_groups, set_trainable


class BlocksResult(Strategy):
    """Full fine-tuning whose result cannot be written."""

    name = "blocks_result"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        os.makedirs(os.environ["BENCH_TEST_BLOCK"], exist_ok=True)
        set_trainable(model, True)
        return backbone_and_head_groups(model)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [BlocksResult]

"""`scratch`: the baseline. Random initialisation whatever the backbone's weights, everything trains."""

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.freezing import backbone_and_head_groups, set_trainable


class Scratch(Strategy):
    name = "scratch"
    from_scratch = True

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        return backbone_and_head_groups(model)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Scratch]

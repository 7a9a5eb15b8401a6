"""`full`: fine-tune everything, backbone and new parts, at one learning rate."""

from harness import ParamGroup, Strategy, TaskModel, backbone_and_head_groups, hookimpl, set_trainable


class Full(Strategy):
    """Fine-tune every parameter, backbone and new parts, at one learning rate."""

    name = "full"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model, True)
        return backbone_and_head_groups(model)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Full]

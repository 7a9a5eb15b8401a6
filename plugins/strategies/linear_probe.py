"""`linear_probe`: the pretrained backbone is frozen, its BatchNorm statistics too; only new parts train.

For classification that is the classic linear probe; for detection and segmentation the new
parts are the whole FPN + RPN + RoI heads or the ASPP head, trained on frozen features.
"""

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.freezing import head_group, set_trainable


class LinearProbe(Strategy):
    """Freeze the backbone and its BatchNorm statistics; train only the new parts."""

    name = "linear_probe"
    default_batchnorm = "frozen_parts"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        return [head_group(model)]


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [LinearProbe]

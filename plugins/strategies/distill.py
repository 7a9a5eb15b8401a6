"""`distill`: fine-tune everything while matching a teacher's outputs (knowledge distillation).

The teacher is another cell of the suite (same task and seed, e.g. the `full` fine-tune of a
larger backbone) or a task-model checkpoint. The term added to the task loss is the task's own
(`Task.distillation_loss`, see bench_plugins.tasks.distillation):
- classification: KL between temperature-softened class distributions, times T^2 (Hinton et al., 2015);
- segmentation: the same KL per pixel of the head's logits, averaged over pixels;
- detection: mean squared error between the student's and the teacher's FPN features, level by level.

With `weight` w the loss is task + w * distillation, i.e. Hinton's (1 - a) task + a distillation
with a = w / (1 + w), up to the learning rate.
"""

from __future__ import annotations

from typing import Annotated, Any

import torch
from pydantic import Field

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    Task,
    TaskModel,
    TeacherRef,
    TrainingContext,
    backbone_and_head_groups,
    hookimpl,
    set_trainable,
)


class DistillOptions(StrategyOptions):
    #: the teacher's backbone: a backbone label of this suite (or, with teacher_checkpoint, a backbone name)
    teacher_backbone: str
    #: the teacher cell's strategy label (ignored with teacher_checkpoint)
    teacher_strategy: str = "full"
    #: a task-model checkpoint to use as the teacher instead of a cell of the suite
    teacher_checkpoint: str | None = None
    temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    weight: Annotated[float, Field(ge=0)] = 1.0


class Distill(Strategy):
    """Fine-tune everything with an extra loss toward a teacher model's outputs."""

    name = "distill"
    Options = DistillOptions
    options: DistillOptions

    def check(self, task_kind: str, task: Task) -> str | None:
        if not task.distilled:
            return f"distill has no distillation loss for task kind {task_kind!r} (Task.distillation_loss)"
        return None

    def teacher(self) -> TeacherRef:
        o = self.options
        return TeacherRef(o.teacher_backbone, o.teacher_strategy, o.teacher_checkpoint)

    def prepare(self, model: TaskModel, context: TrainingContext) -> list[ParamGroup]:
        if context.teacher is None:
            raise ValueError("distill needs a teacher model")
        set_trainable(model, True)
        return backbone_and_head_groups(model)

    def extra_loss(self, model: TaskModel, batch: Any, outputs: Any, context: TrainingContext) -> torch.Tensor:
        """The teacher sees the step's batch; the task compares its outputs with the student's."""
        assert context.teacher is not None
        loss = context.task.distillation_loss(outputs, context.teacher, batch, self.options.temperature)
        return self.options.weight * loss


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Distill]

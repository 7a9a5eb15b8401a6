"""`distill`: fine-tune everything while matching a teacher's outputs (knowledge distillation).

The teacher is another cell of the suite (same task and seed, e.g. the `full` fine-tune of a
larger backbone) or a task-model checkpoint. The term added to the task loss suits the task:
- classification: KL between temperature-softened class distributions, times T^2 (Hinton et al., 2015);
- segmentation: the same KL per pixel of the head's logits, averaged over pixels;
- detection: mean squared error between the student's and the teacher's FPN features, level by level.

With `weight` w the loss is task + w * distillation, i.e. Hinton's (1 - a) task + a distillation
with a = w / (1 + w), up to the learning rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, TeacherRef, TrainingContext, hookimpl
from harness.freezing import backbone_and_head_groups, set_trainable


def soft_label_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over samples (classes on dim 1)."""
    log_p = F.log_softmax(student.float() / temperature, dim=1)
    log_q = F.log_softmax(teacher.float() / temperature, dim=1)
    per_sample = (log_q.exp() * (log_q - log_p)).sum(dim=1)
    return temperature**2 * per_sample.mean()


def pixel_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """`soft_label_kl` at every pixel of (N, C, H, W) logits, averaged over pixels; sizes follow the teacher."""
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    return soft_label_kl(student, teacher, temperature)


def feature_mse(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean over feature levels of the mean squared difference; sizes follow the teacher."""
    losses = []
    for level, target in teacher.items():
        feature = student[level].float()
        if feature.shape[-2:] != target.shape[-2:]:
            feature = F.interpolate(feature, size=target.shape[-2:], mode="bilinear", align_corners=False)
        losses.append(F.mse_loss(feature, target.float()))
    return torch.stack(losses).mean()


#: the task kinds with a distillation loss: what of the task's outputs is distilled
DISTILLED = {
    "classification": "logits",
    "segmentation": "per-pixel logits",
    "detection": "FPN features",
}


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

    def check(self, task_kind: str) -> str | None:
        if task_kind not in DISTILLED:
            return f"distill has no distillation loss for task kind {task_kind!r}"
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
        """The teacher sees the step's images; its outputs are compared with the student's."""
        teacher, images, temperature = context.teacher, batch[0], self.options.temperature
        assert teacher is not None
        kind = context.task.name
        with torch.no_grad():
            target = teacher.features(images) if kind == "detection" else teacher(images)  # type: ignore[operator]
        if kind == "detection":
            loss = feature_mse(outputs["features"], target)
        elif kind == "segmentation":
            loss = pixel_kl(outputs, target, temperature)
        else:
            loss = soft_label_kl(outputs, target, temperature)
        return self.options.weight * loss


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [Distill]

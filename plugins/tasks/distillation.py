"""The distillation losses of the built-in tasks (`Task.distillation_loss`), one per kind of output.

- classification: KL between temperature-softened class distributions, times T^2 (Hinton et al., 2015);
- segmentation: the same KL per pixel of the head's logits, averaged over pixels;
- detection: mean squared error between the student's and the teacher's FPN features, level by level.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


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

"""Helpers strategies use to decide what trains."""

from __future__ import annotations

from torch import nn

from harness.components import ParamGroup, TaskModel

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Put every BatchNorm in `module` in eval mode: running statistics stop updating."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def backbone_and_head_groups(model: TaskModel, head_lr_scale: float = 1.0) -> list[ParamGroup]:
    """Two optimizer groups, the pretrained backbone and the new parts."""
    return [
        ParamGroup(params=list(model.backbone.parameters()), lr_scale=1.0, name="backbone"),
        ParamGroup(params=list(model.head.parameters()), lr_scale=head_lr_scale, name="head"),
    ]

"""Helpers strategies use to decide what trains, at which learning rate, with which BatchNorm statistics."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from harness.components import ParamGroup, TaskModel


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(trainable)


def head_group(model: TaskModel, lr_scale: float = 1.0) -> ParamGroup:
    """The optimizer group of the new parts."""
    return ParamGroup(params=list(model.head.parameters()), lr_scale=lr_scale, name="head")


def with_head(
    model: TaskModel, params: Iterable[nn.Parameter], name: str, head_lr_scale: float = 1.0
) -> list[ParamGroup]:
    """Two optimizer groups: `params` of the backbone (at the base rate) and the new parts."""
    return [ParamGroup(params=list(params), lr_scale=1.0, name=name), head_group(model, head_lr_scale)]


def backbone_and_head_groups(model: TaskModel, head_lr_scale: float = 1.0) -> list[ParamGroup]:
    """Two optimizer groups, the pretrained backbone and the new parts."""
    return with_head(model, model.backbone.parameters(), "backbone", head_lr_scale)


def stage_groups(model: TaskModel, scales: Iterable[float], head_lr_scale: float = 1.0) -> list[ParamGroup]:
    """One optimizer group per backbone stage (input to output, at `scales`) plus one for the new parts."""
    groups = [
        ParamGroup(params=list(stage.parameters()), lr_scale=scale, name=f"stage{i}")
        for i, (stage, scale) in enumerate(zip(model.backbone.stages, scales, strict=True))
    ]
    return [*groups, head_group(model, head_lr_scale)]


def check_stage_count(model: TaskModel, count: int, option: str) -> None:
    """Fail clearly when an option names more stages than the backbone has."""
    stages = len(model.backbone.stages)
    if count > stages:
        raise ValueError(f"{option} = {count}, but the backbone has {stages} stages")

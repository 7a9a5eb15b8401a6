"""BatchNorm policies: which normalisation layers keep updating their running statistics while a model trains."""

from __future__ import annotations

from typing import Literal

from torch import nn

#: update the statistics everywhere, only where the layer's affine parameters train, or nowhere
BatchNormPolicy = Literal["train", "frozen_parts", "freeze"]

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Put every BatchNorm in `module` in eval mode: running statistics stop updating."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def apply_batchnorm_policy(model: nn.Module, policy: BatchNormPolicy) -> None:
    """Set each BatchNorm's mode in a model that is training.

    `frozen_parts` fixes the statistics of BatchNorm layers whose affine parameters do not
    train: their features are meant to stay as pretrained. BatchNorm without affine
    parameters keeps training its statistics there.
    """
    for m in model.modules():
        if not isinstance(m, nn.modules.batchnorm._BatchNorm):
            continue
        params = list(m.parameters(recurse=False))
        if policy == "freeze":
            frozen = True
        elif policy == "frozen_parts":
            frozen = bool(params) and not any(p.requires_grad for p in params)
        else:
            frozen = False
        m.train(model.training and not frozen)

"""Any timm model as a staged backbone (`pip install -e ".[timm]"`).

timm's `features_only` wrapper runs the model's modules in order and taps the end of each
stage; cutting that module list at the taps gives the stages, so every strategy and task
works on timm models as on torchvision's. Models whose features come from hooks or from
`forward_intermediates` (ViTs, Swin) are not a module sequence and are refused.

Weights: a local checkpoint in timm's own layout (`pytorch_model.bin` or `model.safetensors`
from the model's Hugging Face page), given as the backbone's `weights` path; normalisation
follows the model's pretrained config.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict
from typing import Any

import torch
from pydantic import field_validator
from torch import nn

from harness import IMAGENET_MEAN, IMAGENET_STD, Backbone, BackboneModule, Options, Unsupported, hookimpl, install_hint

MISSING = f"the timm backbone needs timm, which is not installed: {install_hint('timm')}"


class TimmOptions(Options):
    #: A timm model name, e.g. "resnet50.a1_in1k", "convnext_tiny", "efficientnet_b3", "regnety_016".
    model: str = "resnet18"

    @field_validator("model")
    @classmethod
    def _known(cls, value: str) -> str:
        if importlib.util.find_spec("timm") is None:
            return value  # checked when a cell builds it: skipped with MISSING, and no warning where unused
        import timm

        if not timm.is_model(value):
            raise ValueError(f"unknown timm model {value!r} (`timm.list_models()` lists them)")
        return value


def _flat(key: str) -> str:
    """A parameter name with timm's features-wrapper renaming (`stages.0` -> `stages_0`) undone."""
    return key.replace(".", "_")


class TimmBackbone(Backbone):
    """A timm model cut into stages where `features_only` taps it."""

    name = "timm"
    Options = TimmOptions
    options: TimmOptions
    output_strides = (8, 16, 32)

    def _features(self, output_stride: int = 32) -> Any:
        if importlib.util.find_spec("timm") is None:
            raise Unsupported(MISSING)
        import timm
        from timm.models import FeatureDictNet

        extra: dict[str, Any] = {} if output_stride == 32 else {"output_stride": output_stride}
        try:
            features = timm.create_model(self.options.model, pretrained=False, features_only=True, **extra)
        except (TypeError, ValueError, AssertionError) as exc:
            raise Unsupported(f"timm model {self.options.model} at output stride {output_stride}: {exc}") from None
        if not isinstance(features, FeatureDictNet):
            raise Unsupported(
                f"timm model {self.options.model} taps its features with {type(features).__name__}, "
                "not a module sequence that can be cut into stages"
            )
        return features

    def build(self, output_stride: int = 32) -> BackboneModule:
        features = self._features(output_stride)
        stages: list[nn.Module] = []
        current: OrderedDict[str, nn.Module] = OrderedDict()
        for name, module in features.items():
            current[name] = module  # named, so parameter names keep timm's and checkpoints map back
            if name in features.return_layers:
                stages.append(nn.Sequential(current))
                current = OrderedDict()
        config = features.pretrained_cfg
        return BackboneModule(stages, config.get("mean", IMAGENET_MEAN), config.get("std", IMAGENET_STD))

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """timm's full-model layout -> stages: the features wrapper keeps every name, dots flattened."""
        module = self.build()
        by_flat = {_flat(k): v for k, v in state_dict.items()}
        target = module.state_dict()
        converted, missing = {}, []
        for key in target:
            native = _flat(key.split(".", 2)[2])  # stages.I.<name in the features wrapper>
            if native in by_flat:
                converted[key] = by_flat[native]
            else:
                missing.append(key)
        if missing:
            raise ValueError(f"checkpoint does not fit timm model {self.options.model}: missing {missing[:3]}")
        return converted


@hookimpl
def bench_backbones() -> list[type[Backbone]]:
    return [TimmBackbone]

"""`lora`: low-rank adapters on the backbone's convolutions and linear layers (via peft); the backbone stays frozen.

LoRA (Hu et al., 2022) adds `W + (alpha / rank) * B A` beside each targeted layer, with B
starting at zero so training starts from the pretrained function. Adapters and new parts
train; the trainable-parameter count is the adapters' plus the new parts'.

peft is an optional extra (the `lora` extra), imported only when a cell prepares its
model; without it, `check` makes every lora cell `skipped` with the line to install it, and the
suite's other strategies still run.
"""

from __future__ import annotations

import importlib.util
import re
import warnings
from typing import Annotated, Literal

from pydantic import Field, field_validator
from torch import nn

from harness import (
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    Unsupported,
    check_stage_count,
    hookimpl,
    install_hint,
    set_trainable,
    with_head,
)

MISSING = f"lora needs peft, which is not installed: {install_hint('lora')}"


def peft_missing() -> str | None:
    """The line to show when peft is not installed, or None; finds peft without importing it (slow)."""
    try:
        found = importlib.util.find_spec("peft") is not None
    except (ImportError, ValueError):  # a broken or half-removed installation
        found = False
    return None if found else MISSING


class LoRAOptions(StrategyOptions):
    rank: Annotated[int, Field(ge=1, le=1024)] = 8
    alpha: Annotated[int, Field(ge=1)] = 16
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0
    #: layer types that get adapters (at least one)
    layers: Annotated[list[Literal["conv", "linear"]], Field(min_length=1)] = ["conv", "linear"]
    #: only layers whose name (inside the backbone, e.g. `stages.4.0.conv2`) matches this regex
    pattern: str | None = None
    #: only the last k stages get adapters (default: all)
    last_stages: Annotated[int, Field(ge=1)] | None = None

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            except RecursionError:
                raise ValueError("not a regular expression this bench can compile: nested too deeply") from None
        return value


class LoRA(Strategy):
    """Freeze the backbone, add trainable low-rank adapters to its conv and linear layers; new parts train."""

    name = "lora"
    Options = LoRAOptions
    options: LoRAOptions
    default_batchnorm = "frozen_parts"

    def check(self, task_kind: str) -> str | None:
        return peft_missing()

    def targets(self, model: TaskModel) -> list[str]:
        """Names (inside the model) of the layers that get adapters."""
        stages = model.backbone.stages
        first = 0
        if self.options.last_stages is not None:
            check_stage_count(model, self.options.last_stages, "last_stages")
            first = len(stages) - self.options.last_stages
        types: tuple[type[nn.Module], ...] = tuple(
            {"conv": nn.Conv2d, "linear": nn.Linear}[layer] for layer in self.options.layers
        )
        found = []
        for i, stage in enumerate(stages):
            if i < first:
                continue
            for name, module in stage.named_modules():
                local = f"stages.{i}.{name}"
                if not isinstance(module, types):
                    continue
                if self.options.pattern and not re.search(self.options.pattern, local):
                    continue
                if isinstance(module, nn.Conv2d) and module.groups > 1:
                    continue  # depthwise convolutions: few weights, and peft needs rank divisible by groups
                found.append(f"backbone.{local}")
        if not found:
            raise ValueError("no backbone layer matches the LoRA targets")
        return found

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        try:  # imported here: peft is an optional extra, and loads slowly
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            if peft_missing():  # e.g. a worker of another machine, without the extra
                raise Unsupported(MISSING) from None
            raise  # installed but broken: a failure, with its traceback

        targets = self.targets(model)
        config = LoraConfig(
            r=self.options.rank,
            lora_alpha=self.options.alpha,
            lora_dropout=self.options.dropout,
            target_modules=targets,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inject_adapter_in_model(config, model)
        adapters = []
        for name, module in model.named_modules():
            if name in targets:
                for adapter in module.lora_A.values():  # type: ignore[union-attr]
                    if isinstance(adapter, nn.Conv2d):  # peft builds A without the layer's dilation
                        adapter.dilation = module.base_layer.dilation  # type: ignore[union-attr]
                adapters += [p for n, p in module.named_parameters() if "lora_" in n]
        set_trainable(model, False)
        set_trainable(model.head, True)
        for parameter in adapters:
            parameter.requires_grad_(True)
        return with_head(model, adapters, "adapters")


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [LoRA]

"""`bitfit`: only the backbone's bias terms (and, optionally, normalisation scales) plus new parts train.

BitFit (Ben Zaken et al., 2022). Convolutions in ResNets have no bias, so there the trained
biases are the normalisation shifts; `norm_weights` adds the normalisation scales.
"""

from __future__ import annotations

from harness import NORM_TYPES, ParamGroup, Strategy, StrategyOptions, TaskModel, hookimpl, set_trainable, with_head


class BitFitOptions(StrategyOptions):
    #: also train the scale (weight) of normalisation layers
    norm_weights: bool = False


class BitFit(Strategy):
    """Train the backbone's biases (and optionally its normalisation scales) and the new parts."""

    name = "bitfit"
    Options = BitFitOptions
    options: BitFitOptions

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        chosen = []
        for module in model.backbone.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if name == "bias" or (self.options.norm_weights and isinstance(module, NORM_TYPES)):
                    parameter.requires_grad_(True)
                    chosen.append(parameter)
        return with_head(model, chosen, "biases")


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [BitFit]

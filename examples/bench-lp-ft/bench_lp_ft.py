"""`lp_ft`: train only the new parts for a few epochs, then fine-tune everything (Kumar et al., 2022)."""

from pydantic import Field

from harness import ParamGroup, Strategy, StrategyOptions, TaskModel, hookimpl


class LPFTOptions(StrategyOptions):
    probe_epochs: int = Field(1, ge=1, description="epochs with a frozen backbone before it unfreezes")


class LPFT(Strategy):
    """Linear probe for `probe_epochs` epochs, then full fine-tuning."""

    name = "lp_ft"
    Options = LPFTOptions
    options: LPFTOptions
    default_batchnorm = "frozen_parts"  # the backbone's statistics stay fixed while it is frozen

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        model.backbone.requires_grad_(False)
        model.head.requires_grad_(True)
        # the backbone is in the optimizer from the start: once unfrozen, it trains at the base rate
        return [
            ParamGroup(params=list(model.backbone.parameters()), lr_scale=1.0, name="backbone"),
            ParamGroup(params=list(model.head.parameters()), lr_scale=1.0, name="head"),
        ]

    def on_epoch_start(self, model: TaskModel, epoch: int) -> None:
        model.backbone.requires_grad_(epoch >= self.options.probe_epochs)


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [LPFT]

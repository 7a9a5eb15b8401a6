"""`linear_probe`: the pretrained backbone is frozen, its BatchNorm statistics too; only new parts train.

For classification that is the classic linear probe; for detection and segmentation the new
parts are the whole FPN + RPN + RoI heads or the ASPP head, trained on frozen features.

With `cache_features` (the default) and where nothing in the backbone can change between epochs
(frozen, BatchNorm fixed, no dropout, a training split without random augmentation, a task that
can train its head on stored features: classification), the backbone runs once per split and the
head trains on the stored features: the same batches, the same result, a fraction of the cost.
The result's `notes.feature_cache` says whether the cache was used, or why not.
"""

from harness import (
    FitOutcome,
    Loop,
    ParamGroup,
    Strategy,
    StrategyOptions,
    TaskModel,
    build_cache,
    cache_problem,
    head_group,
    hookimpl,
    set_trainable,
)


class LinearProbeOptions(StrategyOptions):
    #: compute the frozen backbone's features once where that changes nothing but the cost
    cache_features: bool = True


class LinearProbe(Strategy):
    """Freeze the backbone and its BatchNorm statistics; train only the new parts."""

    name = "linear_probe"
    Options = LinearProbeOptions
    options: LinearProbeOptions
    default_batchnorm = "frozen_parts"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        set_trainable(model.backbone, False)
        set_trainable(model.head, True)
        return [head_group(model)]

    def fit(self, loop: Loop) -> FitOutcome:
        notes = loop.notes
        if not self.options.cache_features:
            notes["feature_cache"] = "off"
            return loop.run()
        problem = cache_problem(loop)
        if problem is not None:
            notes["feature_cache"] = f"not used: {problem}"
            return loop.run()
        cache = build_cache(loop)
        notes["feature_cache"] = "used"
        outcome = loop.run(
            model=cache.model, loaders=cache.loaders, train_seconds=cache.train_seconds, eval_seconds=cache.eval_seconds
        )
        outcome.model = loop.model  # the whole model, whose head was trained through the cache
        return outcome


@hookimpl
def bench_strategies() -> list[type[Strategy]]:
    return [LinearProbe]

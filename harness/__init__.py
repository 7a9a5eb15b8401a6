"""bench: which fine-tuning strategy pays off, for which backbone, on which vision task, at what cost.

The public API for users and plugin authors.
"""

from harness.components import (
    OMITTED_AT_DEFAULT,
    Backbone,
    BackboneModule,
    Dataset,
    Executor,
    Logger,
    NamedWeights,
    NoOptions,
    Options,
    ParamGroup,
    Reporter,
    Strategy,
    StrategyOptions,
    Task,
    TaskModel,
    TeacherRef,
    TrainingContext,
)
from harness.errors import BenchError, Diverged, SuiteError, Unsupported
from harness.hookspecs import hookimpl

__all__ = [
    "OMITTED_AT_DEFAULT",
    "Backbone",
    "BackboneModule",
    "BenchError",
    "Dataset",
    "Diverged",
    "Executor",
    "FitOutcome",
    "Logger",
    "NamedWeights",
    "NoOptions",
    "Options",
    "ParamGroup",
    "Reporter",
    "Strategy",
    "StrategyOptions",
    "SuiteError",
    "Task",
    "TaskModel",
    "TeacherRef",
    "TrainingContext",
    "TrainingLoop",
    "Unsupported",
    "hookimpl",
    "load_results",
    "load_suite",
    "run_suite",
]


def __getattr__(name: str) -> object:
    """Heavier entry points load on first use, so `import harness` stays cheap for plugins."""
    if name == "load_results":
        from harness.store import load_results

        return load_results
    if name == "load_suite":
        from harness.suite import load_suite

        return load_suite
    if name in ("TrainingLoop", "FitOutcome"):
        import harness.training

        return getattr(harness.training, name)
    if name == "run_suite":
        from harness.runner import run_suite

        return run_suite
    raise AttributeError(name)

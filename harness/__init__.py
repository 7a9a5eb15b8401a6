"""bench: which fine-tuning strategy pays off, for which backbone, on which vision task, at what cost.

The public API for users and plugin authors: everything a built-in plugin uses is here, so a
third party can write anything a built-in does. Names load on first use (PEP 562), so importing
a torch-free module such as `harness.settings` does not import torch through this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: every public name, and the module that defines it
EXPORTS: dict[str, str] = {
    # components plugins provide
    "Backbone": "harness.components",
    "BackboneModule": "harness.components",
    "CellInput": "harness.components",
    "CellRef": "harness.components",
    "Dataset": "harness.components",
    "Executor": "harness.components",
    "FitOutcome": "harness.components",
    "IMAGENET_MEAN": "harness.components",
    "IMAGENET_STD": "harness.components",
    "Logger": "harness.components",
    "Loop": "harness.components",
    "NamedWeights": "harness.components",
    "NoOptions": "harness.components",
    "OMITTED_AT_DEFAULT": "harness.components",
    "Options": "harness.components",
    "ParamGroup": "harness.components",
    "Reporter": "harness.components",
    "Strategy": "harness.components",
    "StrategyOptions": "harness.components",
    "Task": "harness.components",
    "TaskModel": "harness.components",
    "TeacherRef": "harness.components",
    "TrainingContext": "harness.components",
    "hookimpl": "harness.hookspecs",
    # errors
    "BenchError": "harness.errors",
    "Diverged": "harness.errors",
    "SuiteError": "harness.errors",
    "Unsupported": "harness.errors",
    # settings, cells, results, events
    "CellSpec": "harness.settings",
    "Suite": "harness.settings",
    "Training": "harness.settings",
    "Cell": "harness.cell",
    "CellResult": "harness.result",
    "RunSummary": "harness.result",
    "Event": "harness.events",
    "Observer": "harness.events",
    # helpers for strategies
    "BatchNormPolicy": "harness.batchnorm",
    "NORM_TYPES": "harness.batchnorm",
    "backbone_and_head_groups": "harness.freezing",
    "check_stage_count": "harness.freezing",
    "head_group": "harness.freezing",
    "set_trainable": "harness.freezing",
    "stage_groups": "harness.freezing",
    "with_head": "harness.freezing",
    "batchnorm_layers": "harness.weight_averaging",
    "interpolate_weights": "harness.weight_averaging",
    "recompute_batchnorm": "harness.weight_averaging",
    "snapshot": "harness.weight_averaging",
    "HeadOnly": "harness.feature_cache",
    "build_cache": "harness.feature_cache",
    "cache_problem": "harness.feature_cache",
    "TrainingLoop": "harness.training",
    "first_mismatch": "harness.weights",
    # helpers for executors
    "Job": "harness.job",
    "JobOutcome": "harness.job",
    "clear_dead_claim": "harness.job",
    "crashed": "harness.job",
    "JobRunner": "harness.components",
    "run_job_safely": "harness.worker",
    "Forwarding": "harness.progress",
    "deliver": "harness.progress",
    "usable_cores": "harness.devices",
    # helpers for reporters and loggers
    "Report": "harness.report",
    "TaskTable": "harness.report",
    "REPORT_SCHEMA": "harness.report",
    "count": "harness.formatting",
    "markdown_grid": "harness.formatting",
    "missing": "harness.formatting",
    "number": "harness.formatting",
    "significant_figures": "harness.formatting",
    "install_hint": "harness.extras",
    # entry points for users
    "load_results": "harness.store",
    "load_suite": "harness.suite",
    "run_suite": "harness.driver",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> object:
    if name not in EXPORTS:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(EXPORTS[name]), name)
    globals()[name] = value  # found once
    return value


if TYPE_CHECKING:
    from harness.batchnorm import NORM_TYPES, BatchNormPolicy
    from harness.cell import Cell
    from harness.components import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        OMITTED_AT_DEFAULT,
        Backbone,
        BackboneModule,
        CellInput,
        CellRef,
        Dataset,
        Executor,
        FitOutcome,
        JobRunner,
        Logger,
        Loop,
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
    from harness.devices import usable_cores
    from harness.driver import run_suite
    from harness.errors import BenchError, Diverged, SuiteError, Unsupported
    from harness.events import Event, Observer
    from harness.extras import install_hint
    from harness.feature_cache import HeadOnly, build_cache, cache_problem
    from harness.formatting import count, markdown_grid, missing, number, significant_figures
    from harness.freezing import (
        backbone_and_head_groups,
        check_stage_count,
        head_group,
        set_trainable,
        stage_groups,
        with_head,
    )
    from harness.hookspecs import hookimpl
    from harness.job import Job, JobOutcome, clear_dead_claim, crashed
    from harness.progress import Forwarding, deliver
    from harness.report import REPORT_SCHEMA, Report, TaskTable
    from harness.result import CellResult, RunSummary
    from harness.settings import CellSpec, Suite, Training
    from harness.store import load_results
    from harness.suite import load_suite
    from harness.training import TrainingLoop
    from harness.weight_averaging import batchnorm_layers, interpolate_weights, recompute_batchnorm, snapshot
    from harness.weights import first_mismatch
    from harness.worker import run_job_safely

"""A suite's searches against the settings and options they name: each path exists, a range is
for a number, every choice and both ends of a range are valid values, and a searched strategy is
neither swept nor linked to other cells' models (its setting is chosen only at run time)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, cast

from pydantic import BaseModel, ValidationError

from harness.callbacks import call
from harness.components import Strategy
from harness.registry import Registry
from harness.search_spec import PATH_ROOTS, Range, SearchSpec, grid_size
from harness.settings import StrategySpec, Suite, TrainingOverrides
from harness.sweeps import option_axes

Fail = Callable[[str, str], Any]


def numeric_kind(annotation: Any) -> type | None:
    """`int` or `float` for a setting that takes a number (unwrapping Annotated and Optional), else None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return numeric_kind(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds = {numeric_kind(a) for a in typing.get_args(annotation) if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    return annotation if annotation in (int, float) else None


def check_searches(suite: Suite, registry: Registry, fail: Fail) -> None:
    """Every search of `suite` makes sense for the strategy it tunes; the first problem calls `fail`."""
    searched = {s.id for s in suite.strategies if suite.search_for(s) is not None}
    if suite.search is not None and not searched:
        fail("search.space", "no strategy has a path to search; give the space at least one path")
    for i, spec in enumerate(suite.strategies):
        own = f"strategies[{i}].search"
        if spec.search is not None and spec.search.enabled and suite.search_for(spec) is None:
            fail(f"{own}.space", "no path to search; give the space at least one path (or `search = false`)")
        search = suite.search_for(spec)
        if search is None:
            continue
        where = own if spec.search is not None else "search"
        _check_strategy(suite, registry, i, spec, search, where, fail)
    _check_uses(suite, registry, searched, fail)


def _check_strategy(
    suite: Suite, registry: Registry, index: int, spec: StrategySpec, search: SearchSpec, where: str, fail: Fail
) -> None:
    options_model = registry.get("strategy", spec.name).Options
    for path, dimension in search.space.items():
        key = f"{where}.space.{path}"
        root, _, name = path.partition(".")
        if root not in PATH_ROOTS or not name:
            fail(key, "unknown path; allowed: training.<setting> or options.<option of the strategy>")
        model: type[BaseModel] = TrainingOverrides if root == "training" else options_model
        if name not in model.model_fields:
            what = "training setting" if root == "training" else f"option of strategy {spec.name!r}"
            allowed = ", ".join(model.model_fields) or "none"
            fail(key, f"no {what} {name!r}; allowed: {allowed}")
        fixed = spec.options if root == "options" else {}
        _check_dimension(model, fixed, name, dimension, search.method, key, fail)
    if search.method == "grid" and search.trials is not None and search.trials > grid_size(search):
        fail(f"{where}.trials", f"{search.trials} trials, but the grid has only {grid_size(search)} points")
    _check_not_swept(suite, registry, index, spec, search, fail)


def _check_dimension(
    model: type[BaseModel], fixed: dict[str, Any], name: str, dimension: Any, method: str, key: str, fail: Fail
) -> None:
    def valid(value: Any, at: str) -> None:
        try:
            model.model_validate({**fixed, name: value})
        except ValidationError as exc:
            error = exc.errors()[0]
            fail(at, f"{' '.join(str(error['msg']).split())} (got {value!r})")

    if isinstance(dimension, list):
        for i, choice in enumerate(dimension):
            valid(choice, f"{key}[{i}]")
        return
    assert isinstance(dimension, Range)
    kind = numeric_kind(model.model_fields[name].annotation)
    if kind is None:
        fail(key, f"{name} is not a number, so it takes no range; give a list of its choices")
    if kind is int and not all(float(v).is_integer() for v in (dimension.low, dimension.high, dimension.step or 1)):
        fail(key, f"{name} is an integer setting; give low, high (and step) as integers")
    if method == "grid" and dimension.step is None:
        fail(key, "a grid search needs choices: give a list, or a range with a step")
    for end in ("low", "high"):
        value = getattr(dimension, end)
        valid(int(value) if kind is int else value, f"{key}.{end}")


def _check_not_swept(
    suite: Suite, registry: Registry, index: int, spec: StrategySpec, search: SearchSpec, fail: Fail
) -> None:
    """A searched strategy has one base setting: no sweep of its training settings or options."""
    cls = registry.get("strategy", spec.name)
    swept = list(option_axes(cls.Options, spec.options)[1])
    for task in suite.tasks:
        swept += [f"training.{k}" for k in suite.training_axes(task, spec) if f"training.{k}" not in swept]
    if swept:
        fail(
            f"strategies[{index}]",
            f"a searched strategy cannot also sweep {', '.join(swept)}; put it in the search space, or give the "
            f"strategy `search = false`",
        )
    strategy = _strategy(spec, registry)
    if strategy.teacher() is not None or call(strategy.inputs, seeds=list(suite.seeds), seed=search.trial_seed):
        fail(
            f"strategies[{index}].search",
            "a strategy that uses other cells' models (a teacher, inputs) cannot be searched; give it `search = false`",
        )


def _check_uses(suite: Suite, registry: Registry, searched: set[str], fail: Fail) -> None:
    """No strategy learns from, or uses the model of, a searched one: its setting is known only after the search."""
    for i, spec in enumerate(suite.strategies):
        if spec.id in searched:
            continue
        strategy = _strategy(spec, registry)
        ref = strategy.teacher()
        used = [ref.strategy] if ref is not None and ref.checkpoint is None else []
        used += [r.strategy for r in call(strategy.inputs, seeds=list(suite.seeds), seed=suite.seeds[0])]
        for name in used:
            if name in searched:
                fail(
                    f"strategies[{i}].options",
                    f"{name!r} is searched, so its setting is chosen at run time and its models cannot be used "
                    f"here; give {name!r} `search = false` (or a fixed copy of it under another label)",
                )


def _strategy(spec: StrategySpec, registry: Registry) -> Strategy:
    """The strategy of `spec` (at the first value of each swept option)."""
    cls = registry.get("strategy", spec.name)
    fixed, axes = option_axes(cls.Options, spec.options)
    return cast(Strategy, cls({**fixed, **{k: v[0] for k, v in axes.items()}}))

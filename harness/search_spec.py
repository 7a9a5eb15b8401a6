"""A hyperparameter search as a suite declares it: `[search]` (every strategy's default) and a
strategy's own `search` table, validated for their shape here (torch-free); `harness.suite`
checks the paths against the settings and options they name, `harness.search` runs them.

A space is keyed by the paths `--set` takes inside a strategy: `training.<setting>` or
`options.<option>`. A value is a range (`{ low = 1e-4, high = 0.1, log = true }`, `step` for a
stepped one) or a list of choices (`[4, 8, 16]`). TOML's dotted keys (`training.lr = {...}`)
arrive as nested tables; they are read back into paths.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

#: the samplers, by the name a suite gives them (Optuna's RandomSampler, TPESampler, GridSampler)
METHODS = ("random", "tpe", "grid")
#: the trials a random or TPE search runs unless told
DEFAULT_TRIALS = 10
#: the seed trials train with unless told: not one of a suite's usual seeds (0, 1, 2, ...)
SEARCH_SEED = 1000
#: where a path in a space may point
PATH_ROOTS = ("training", "options")


class Range(BaseModel):
    """A numeric range, integer or float by the setting it is for; `log`: sampled on a log scale."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    low: float
    high: float
    log: bool = False
    #: a stepped range (`low`, `low + step`, ... up to `high`): what a grid search needs of a range
    step: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        for name in ("low", "high"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("a range is either log or stepped, not both")
        return self

    def points(self) -> list[float]:
        """The values of a stepped range, `low` to `high` inclusive (a grid search's choices)."""
        assert self.step is not None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [self.low + i * self.step for i in range(count)]


Dimension = Range | list[Any]


class SearchSpec(BaseModel):
    """`[search]`: how every strategy is tuned unless its own `search` table says otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: false: this strategy is not searched (`search = false` in a strategy reads as this)
    enabled: bool = True
    method: Literal["random", "tpe", "grid"] = "tpe"
    #: trials per strategy (per task x backbone); a grid search's default is the grid's size
    trials: int | None = Field(None, ge=1, le=100_000)
    #: the sampler's seed, and the training seed every trial runs with; default `SEARCH_SEED` (or the
    #: first seed after it the suite does not use), so the final runs are independent of the trials
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    #: trials of one search in flight at once (the executor's slots still bound the total)
    parallel: int = Field(1, ge=1, le=1024)
    #: paths (`training.lr`, `options.rank`) and what each may take
    space: dict[str, Dimension] = {}

    @model_validator(mode="before")
    @classmethod
    def _off(cls, value: Any) -> Any:
        return {"enabled": False} if value is False else value

    @field_validator("space", mode="before")
    @classmethod
    def _dimensions(cls, value: Any) -> Any:
        """Each path's range or choices, validated here so an error names the path (`search_space` errors)."""
        if not isinstance(value, dict):
            return value
        return {path: _dimension(path, given) for path, given in flatten_space(value).items()}

    def merged(self, own: SearchSpec) -> SearchSpec:
        """This default with a strategy's own table over it: the fields it gives win, its space adds paths."""
        given = {name: getattr(own, name) for name in own.model_fields_set if name != "space"}
        return self.model_copy(update={**given, "space": {**self.space, **own.space}})

    def with_seed(self, suite_seeds: list[int]) -> SearchSpec:
        """This search with its seed resolved: `SEARCH_SEED`, or the first seed after it the suite does not use."""
        if self.seed is not None:
            return self
        seed = SEARCH_SEED
        while seed in suite_seeds:
            seed += 1
        return self.model_copy(update={"seed": seed})

    @property
    def trial_seed(self) -> int:
        assert self.seed is not None, "resolved by with_seed"
        return self.seed

    def budget(self) -> int:
        """The trials this search runs: `trials`, or the grid's size."""
        if self.trials is not None:
            return self.trials
        return grid_size(self) if self.method == "grid" else DEFAULT_TRIALS


def _dimension(path: str, given: Any) -> Dimension:
    def fail(problem: str) -> PydanticCustomError:
        return PydanticCustomError("search_space", "{path}: {problem}", {"path": path, "problem": problem})

    if isinstance(given, dict):
        try:
            return Range.model_validate(given)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; allowed: low, high, log, step"
            raise fail(f"{where + ': ' if where else ''}{message}") from None
    if isinstance(given, list):
        if not given:
            raise fail("an empty list of choices; give at least one value")
        if len({repr(v) for v in given}) != len(given):
            raise fail("a value appears twice among the choices")
        if not all(isinstance(v, bool | int | float | str) for v in given):
            raise fail("choices are numbers, strings or booleans")
        return list(given)
    raise fail(f"give a range {{ low = ..., high = ... }} or a list of choices (got {given!r})")


def grid_size(spec: SearchSpec) -> int:
    size = 1
    for dimension in spec.space.values():
        size *= len(dimension) if isinstance(dimension, list) else len(dimension.points())
    return size


def flatten_space(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"training": {"lr": {...}}}` (TOML's dotted keys) as `{"training.lr": {...}}`; a table with
    `low` or `high` is a range, anything else that is a table is a level of the path."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and not ({"low", "high", "log", "step"} & set(value)):
            flat.update(flatten_space(value, path + "."))  # an empty table adds nothing
        else:
            flat[path] = value
    return flat

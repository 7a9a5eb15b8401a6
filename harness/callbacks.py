"""Calling a plugin's callbacks with the arguments they ask for, as pluggy calls hook implementations.

A callback takes its fixed leading arguments (the model, a counter) positionally; every other
argument the harness can give (`context`, `batch`, `outputs`, `optimizer`, ...) is passed by
name only when the callback's signature has a parameter of that name (or `**kwargs`). New
arguments can thus be offered later without breaking a plugin written before them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=512)
def _accepted(function: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """(the names of its parameters in order, whether it takes **kwargs)."""
    parameters = inspect.signature(function).parameters.values()
    names = tuple(p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def call(method: Callable[..., Any], *fixed: Any, **offered: Any) -> Any:
    """`method(*fixed, **the offered arguments its signature names)`."""
    function = getattr(method, "__func__", method)
    names, takes_any = _accepted(function)
    if takes_any:
        return method(*fixed, **offered)
    bound = 1 if function is not method else 0  # `self` of a bound method
    free = names[bound + len(fixed) :]  # the fixed arguments fill the first positional slots
    return method(*fixed, **{k: v for k, v in offered.items() if k in free})

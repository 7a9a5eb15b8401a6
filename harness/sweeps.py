"""Which values of a suite are sweeps: a list given for a setting or option that takes one value.

A list is a sweep unless the option itself takes a list; then a list of lists is.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel


def option_axes(options: type[BaseModel], values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split a component's options into fixed values and swept ones.

    A list is a sweep unless the option itself takes a list; then a list of lists is.
    """
    fixed, axes = {}, {}
    for key, value in values.items():
        field = options.model_fields.get(key)
        takes_list = field is not None and _accepts_list(field.annotation)
        if isinstance(value, list) and value and (not takes_list or all(isinstance(v, list) for v in value)):
            axes[key] = value
        else:
            fixed[key] = value
    return fixed, axes


def _accepts_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return True
    if origin is Annotated:
        return _accepts_list(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_accepts_list(a) for a in typing.get_args(annotation))
    return False

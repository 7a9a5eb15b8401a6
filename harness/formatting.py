"""How report numbers are written as text, shared by `bench compare` and the built-in reporters."""

from __future__ import annotations

import math
from typing import Any

#: the longest error line printed; a longer one keeps its start (file, key) and end (what is allowed)
MAX_MESSAGE = 1000


def clip_message(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` cut in the middle to about `limit` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    head, tail = limit * 2 // 3, limit // 3
    return f"{text[:head]} ...[{len(text) - head - tail} characters left out]... {text[-tail:]}"


def missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any, digits: int = 4, signed: bool = False) -> str:
    if missing(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def significant_figures(value: Any, figures: int = 3, signed: bool = False) -> str:
    if missing(value):
        return "-"
    return f"{value:+.{figures}g}" if signed else f"{value:.{figures}g}"


def count(value: Any) -> str:
    if missing(value):
        return "-"
    value = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def markdown_grid(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (a `|` inside a cell becomes `/`)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *(line(r) for r in rows)])

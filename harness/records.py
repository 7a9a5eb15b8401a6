"""Plain-text records: what a wide table becomes when stdout is a pipe or a file.

A rich table squeezed into 80 columns wraps or cuts its cells, and the cell cut is often the one
a reader copies (a file name, a package version). Here each row is a title line of short fields,
then one `name: value` line per long field, wrapped at spaces but never inside a word, so every
value survives whole and `grep NAME` still finds it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

WIDTH = 80
INDENT = "    "


def plain_records(rows: Iterable[Sequence[str]], title_fields: int, names: Sequence[str], width: int = WIDTH) -> str:
    """The first `title_fields` values of each row on one line, the rest named on lines of their own."""
    lines: list[str] = []
    for row in rows:
        lines.append("  ".join(value for value in row[:title_fields] if value))
        for name, value in zip(names[title_fields:], row[title_fields:], strict=True):
            if not value:
                continue
            lines += textwrap.wrap(
                f"{name}: {value}",
                width=width,
                initial_indent=INDENT,
                subsequent_indent=INDENT + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
    return "\n".join(lines)

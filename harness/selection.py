"""`--only KEY=VALUE,...`: a part of a suite's grid, by the names `bench plan` shows.

Keys are ANDed, the values of one key ORed: `--only task=cls,strategy=full,strategy=lora` is the
`full` and `lora` cells of task `cls`. Several `--only` options are one filter. A `setting` value
is one part of a swept setting (`setting=rank=8`); parts of different sweeps are ANDed like keys.
The cells a selected cell needs (its distillation teacher) stay in; the pretraining stages follow
from the cells (`harness.job.plan_jobs`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from harness.cell import Cell
from harness.errors import BenchError

#: what `--only` can select on, in the order `bench plan` shows them
ONLY_KEYS = ("task", "backbone", "strategy", "seed", "setting")
PLURALS = {"task": "tasks", "backbone": "backbones", "strategy": "strategies", "seed": "seeds", "setting": "settings"}
#: where one part of a setting ("lr=0.01, rank=8") ends: before ", NAME="
_PART_BREAK = re.compile(r", (?=[A-Za-z_][\w.]*=)")


@dataclass(frozen=True)
class CellFilter:
    """The values asked for, per key (each `KEY=VALUE` as given, for messages)."""

    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    given: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.values)

    def __str__(self) -> str:
        return "--only " + ",".join(self.given)

    def matches(self, cell: Cell) -> bool:
        for key, wanted in self.values.items():
            if key == "setting":
                parts = setting_parts(cell.setting)
                names = {part.split("=", 1)[0] for part in wanted}
                for name in names:  # each swept setting named is a key of its own
                    alternatives = [w for w in wanted if w.split("=", 1)[0] == name]
                    if not any(_same(key, part, w) for part in parts for w in alternatives):
                        return False
            elif _value(cell, key) not in wanted:
                return False
        return True


def setting_parts(setting: str) -> list[str]:
    """`"lr=0.01, rank=8"` -> `["lr=0.01", "rank=8"]` (a list value's own ", " stays in its part)."""
    return _PART_BREAK.split(setting) if setting else []


def _value(cell: Cell, key: str) -> str:
    return str(getattr(cell, key))


def parse_only(texts: Sequence[str] | None, keys: Sequence[str] = ONLY_KEYS) -> CellFilter:
    """`--only` options -> a filter; a `BenchError` (one line) for a part that is not KEY=VALUE of `keys`."""
    values: dict[str, list[str]] = {}
    given: list[str] = []
    for text in texts or ():
        parts = [part.strip() for part in _split_parts(text)]
        if not text.strip():
            raise BenchError("--only: empty; give KEY=VALUE pairs, e.g. --only task=shapes-cls,strategy=full")
        for part in parts:
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key or not value:
                raise BenchError(f"--only {text}: {part!r} is not KEY=VALUE; e.g. --only task=shapes-cls,strategy=full")
            if key not in keys:
                raise BenchError(f"--only {part}: unknown key {key!r}; allowed: {', '.join(keys)}")
            if key == "setting" and "=" not in value:
                raise BenchError(
                    f"--only {part}: a setting is NAME=VALUE as `bench plan` shows it, e.g. setting=lr=0.1"
                )
            if key == "setting":
                name, _, setting = value.partition("=")
                value = f"{name.strip()}={setting.strip()}"
            if key == "seed" and value.isascii() and value.isdigit():
                value = str(int(value))  # 007 is seed 7
            if value not in values.setdefault(key, []):
                values[key].append(value)
            given.append(f"{key}={value}")
    return CellFilter({key: tuple(v) for key, v in values.items()}, tuple(given))


def _split_parts(text: str) -> list[str]:
    """`--only` text -> its KEY=VALUE parts: split at commas, but not inside brackets or braces (nor a
    quoted string in them), so a list-valued setting as `bench plan` shows it
    (`setting=layers=['conv', 'linear']`) stays one part."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"" and depth:
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def available(cells: Iterable[Cell]) -> dict[str, list[str]]:
    """Every value each key can take in these cells, in plan order."""
    found: dict[str, dict[str, None]] = {key: {} for key in ONLY_KEYS}
    for cell in cells:
        for key in ONLY_KEYS:
            for value in setting_parts(cell.setting) if key == "setting" else [_value(cell, key)]:
                found[key][value] = None
    return {key: list(values) for key, values in found.items()}


def check_values(only: CellFilter, allowed: dict[str, list[str]], where: str) -> None:
    """Every value asked for is one of `allowed`; else a one-line `BenchError` listing them."""
    for key, wanted in only.values.items():
        for value in wanted:
            if not any(_same(key, shown, value) for shown in allowed.get(key, [])):
                choices = ", ".join(allowed.get(key, [])) or ("none (nothing is swept)" if key == "setting" else "none")
                raise BenchError(f"--only {key}={value}: no {key} {value!r} in {where}; {PLURALS[key]}: {choices}")


def _same(key: str, shown: str, asked: str) -> bool:
    """The value asked for is the one shown; a setting part by its TOML value (`lr=1e-2` is `lr=0.01`)."""
    if shown == asked or key != "setting":
        return shown == asked
    name, _, value = shown.partition("=")
    asked_name, _, asked_value = asked.partition("=")
    if name != asked_name:
        return False
    a, b = _toml(value), _toml(asked_value)
    if isinstance(a, bool) or isinstance(b, bool):  # true is not 1
        return a is b
    return bool(a == b)


def _toml(text: str) -> object:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return text


def select_cells(cells: list[Cell], only: CellFilter | None, where: str) -> list[Cell]:
    """The cells `only` selects and the cells whose models they need (teachers, inputs), in plan order (all
    without a filter).

    `where` names the suite in messages. A value no cell has, or a filter that leaves no cell, is a `BenchError`.
    """
    if not only:
        return cells
    check_values(only, available(c for c in cells if not c.is_pretraining), where)
    chosen = {c.key for c in cells if not c.is_pretraining and only.matches(c)}
    if not chosen:
        raise BenchError(f"{only}: no cell of {where} has all of these; `bench plan` lists the cells")
    by_key = {c.key: c for c in cells}
    todo = list(chosen)
    while todo:  # the cells needed, and theirs (a soup's ingredient may learn from a teacher)
        for needed in by_key[todo.pop()].needs:
            if needed in by_key and needed not in chosen:
                chosen.add(needed)
                todo.append(needed)
    return [c for c in cells if c.key in chosen]

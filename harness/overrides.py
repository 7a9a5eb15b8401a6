"""`--set PATH=VALUE`: a setting of a suite file changed on the command line.

An override is applied to the file's parsed TOML, before validation, so the suite is validated
exactly as if the file said it (`load_suite(path, overrides=[...])`). PATH is dotted: tables by
key (`training.epochs`), arrays of tables by the entry's name (`tasks.shapes-det.training.batch_size`:
tasks by `name`, backbones and strategies by `label` or else `name`, pretraining stages and
loggers by `name`) or by index (`tasks.0.training.batch_size`). VALUE is a TOML value
(`[4, 8]`, `1e-3`, `true`, `"text"`), or else the text itself (`cpu`, `none`).
"""

from __future__ import annotations

import copy
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import BenchError

#: the arrays of tables of a suite file, the fields that name their entries (first present wins),
#: and what an entry is called in messages
NAMED_ENTRIES: dict[str, tuple[tuple[str, ...], str]] = {
    "tasks": (("name",), "task"),
    "backbones": (("label", "name"), "backbone"),
    "strategies": (("label", "name"), "strategy"),
    "pretrain": (("name",), "pretraining stage"),
    "loggers": (("name",), "logger"),
    "exclude": ((), "exclusion"),
}
#: entries a file may give as a bare name (`executor = "ray"`, `loggers = ["mlflow"]`), a table in full
SHORTHANDS = ("executor", "loggers")


class ShadowedOverride(UserWarning):
    """A `--set` of a `[training]` setting that an entry sets for itself, so it does not reach that entry."""


#: the arrays of tables whose entries set training settings for themselves, winning over `[training]`
OWN_TRAINING = ("tasks", "strategies", "pretrain")


@dataclass(frozen=True)
class Override:
    """One `--set` (or `--set-all`, `everywhere`): the text as given, its key path and its value."""

    text: str
    path: tuple[str, ...]
    value: Any
    #: `--set-all training.KEY=VALUE`: also in every task, strategy and pretraining stage that sets KEY itself
    everywhere: bool = False

    @property
    def option(self) -> str:
        return "--set-all" if self.everywhere else "--set"

    def __str__(self) -> str:
        return f"{self.option} {_clip(self.text)}"


def parse_override(text: str, everywhere: bool = False) -> Override:
    """`PATH=VALUE` -> Override; a `BenchError` (one line) when it is not one."""
    option = "--set-all" if everywhere else "--set"
    if "=" not in text:
        raise BenchError(f"{option} {_clip(text)}: not PATH=VALUE; e.g. {option} training.epochs=1")
    key, value = text.split("=", 1)
    parts = tuple(part.strip() for part in key.split("."))
    if not all(parts):
        raise BenchError(
            f"{option} {_clip(text)}: empty key in {_clip(key.strip())!r}; give a dotted path, e.g. training.epochs"
        )
    if everywhere and (len(parts) != 2 or parts[0] != "training"):
        raise BenchError(
            f"--set-all {_clip(text)}: only training.KEY settings are also set per entry; "
            f"allowed: training.KEY=VALUE, e.g. --set-all training.epochs=1 (other paths: --set)"
        )
    return Override(text, parts, parse_value(value, text), everywhere)


def parse_value(text: str, given: str) -> Any:
    """A TOML value (`1`, `[4, 8]`, `"x"`, `{ a = 1 }`), or else the text itself as a string."""
    if not text.isprintable():
        raise BenchError(f"--set {_clip(given)}: line breaks and control characters are not allowed in a value")
    try:
        parsed = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError as exc:
        bare = text.strip()
        if bare[:1] in ("[", "{", '"', "'"):  # meant as TOML: say why it is not, rather than take it as text
            raise BenchError(f"--set {_clip(given)}: {_clip(bare)!r} is not a TOML value: {exc}") from None
        return bare
    except RecursionError:
        raise BenchError(f"--set {_clip(given)}: the value is nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts
        limit = sys.get_int_max_str_digits()
        allowed = f"allowed: integers of at most {limit} digits"
        raise BenchError(f"--set {_clip(given)}: an integer of more than {limit} digits; {allowed}") from None
    return parsed["v"]


def parse_overrides(texts: Sequence[str | Override] | None) -> list[Override]:
    """Each text parsed as a `--set`; an `Override` (e.g. a parsed `--set-all`) is kept as it is."""
    return [text if isinstance(text, Override) else parse_override(text) for text in texts or ()]


def apply_overrides(data: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A copy of a suite file's data with each override applied, in order (a later one wins)."""
    data = copy.deepcopy(data)
    for override in overrides:
        _apply(data, override)
        if override.everywhere:
            for _, _, training in _own_training(data):
                if override.path[1] in training:
                    training[override.path[1]] = copy.deepcopy(override.value)
    return data


def shadowed(data: dict[str, Any], overrides: Sequence[Override]) -> list[str]:
    """One line per entry of `data` (overrides applied) that sets for itself, to another value, a
    `[training]` setting a `--set` changed: the entry's own value wins there, which the user should know."""
    lines = []
    for override in overrides:
        if override.path[0] != "training" or override.everywhere or len(override.path) > 2:
            continue
        if len(override.path) == 2:
            changed = {override.path[1]: override.value}
        elif isinstance(override.value, dict):
            changed = override.value
        else:
            continue
        for table, name, training in _own_training(data):
            for key, value in changed.items():
                if key in training and training[key] != value:
                    what = NAMED_ENTRIES[table][1]
                    lines.append(
                        f"{override} does not reach {what} {name!r}, which sets training.{key} = "
                        f"{_short(training[key])} itself; --set {table}.{name}.training.{key}=... sets it there, "
                        f"--set-all training.{key}=... everywhere"
                    )
    return lines


def _own_training(data: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(table, entry name, its `training` table) of each entry that has one."""
    found = []
    for table in OWN_TRAINING:
        entries = data.get(table)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and isinstance(entry.get("training"), dict):
                name = _entry_id(entry, NAMED_ENTRIES[table][0])
                found.append((table, name if name is not None else str(index), entry["training"]))
    return found


def _apply(data: dict[str, Any], override: Override) -> None:
    path = override.path
    node: Any = data
    i = 0
    while True:
        where = _clip(".".join(path[:i]))
        if isinstance(node, dict):
            key = path[i]
            if i == len(path) - 1:
                node[key] = copy.deepcopy(override.value)
                return
            child = node.get(key)
            if child is None:  # a new key; the top-level arrays of tables are lists even when absent
                child = node[key] = [] if node is data and key in NAMED_ENTRIES else {}
            elif isinstance(child, str) and node is data and key in SHORTHANDS:
                child = node[key] = {"name": child}
            node = child
            i += 1
        elif isinstance(node, list):
            table = path[0] if i == 1 and path[0] in NAMED_ENTRIES else None
            index, used = _entry(node, path, i, table, override)
            i += used
            if i == len(path):  # the entry itself, replaced
                node[index] = copy.deepcopy(override.value)
                return
            if isinstance(node[index], str) and table in SHORTHANDS:
                node[index] = {"name": node[index]}
            node = node[index]
        else:
            raise BenchError(
                f"{override}: {where} is {_short(node)}, not a table; {_clip(path[i])!r} cannot be set in it"
            )


def _entry(items: list[Any], path: tuple[str, ...], i: int, table: str | None, override: Override) -> tuple[int, int]:
    """The index of the entry `path[i:]` starts with, and how many path parts name it.

    A name may contain dots: the longest run of parts that names an entry wins. Then an index.
    """
    if table is not None and NAMED_ENTRIES[table][0]:
        return _named_entry(items, path, i, table, override)
    part = path[i]
    where = _clip(".".join(path[:i]))
    if _index_in(part, items):
        return int(part), 1
    if not items:
        raise BenchError(f"{override}: {where} is an empty list; there is no entry {_clip(part)!r} to set")
    raise BenchError(f"{override}: {where} is a list of {len(items)}; give an index from 0 to {len(items) - 1}")


def _index_in(part: str, items: list[Any]) -> bool:
    return part.isascii() and part.isdigit() and int(part) < len(items)


def _named_entry(items: list[Any], path: tuple[str, ...], i: int, table: str, override: Override) -> tuple[int, int]:
    """An entry of a table whose entries have names (tasks, strategies...), by name, label or index."""
    fields, what = NAMED_ENTRIES[table]
    ids = [_entry_id(item, fields) for item in items]
    for end in range(len(path), i, -1):
        name = ".".join(path[i:end])
        found = [n for n, id_ in enumerate(ids) if id_ == name]
        if not found and len(fields) > 1:  # a labelled entry, by its plain name when that is unambiguous
            found = [n for n, item in enumerate(items) if isinstance(item, dict) and item.get(fields[-1]) == name]
            if len(found) > 1:
                labels = ", ".join(str(ids[n]) for n in found)
                raise BenchError(
                    f"{override}: {len(found)} {table} are named {name!r} ({labels}); give the label instead"
                )
        if found:
            return found[0], end - i
    part = path[i]
    if _index_in(part, items):
        return int(part), 1
    named = ", ".join(str(id_) for id_ in ids if id_ is not None) or "none declared"
    index = f" and no entry {part} ({len(items)} entries)" if part.isascii() and part.isdigit() else ""
    raise BenchError(f"{override}: no {what} named {_clip(part)!r}{index}; {table}: {named}")


def _entry_id(item: Any, fields: tuple[str, ...]) -> str | None:
    if isinstance(item, str):  # `loggers = ["tensorboard"]`
        return item
    if isinstance(item, dict):
        for field in fields:
            if isinstance(item.get(field), str):
                return str(item[field])
    return None


#: the most characters of an option (or a part of it) an error message repeats
SHOWN = 120


def _clip(text: str) -> str:
    """`text`, cut to `SHOWN` characters: an error about a 100 kB value stays a readable line."""
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def applied(overrides: Sequence[Override]) -> str:
    """`--set a=1, --set b=2`: what a message says was applied."""
    return ", ".join(str(o) for o in overrides)

"""Shared test helpers: tiny suites that run in seconds on two CPU cores."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.registry import Registry
from harness.testing import TINY_DETECTION


def tiny_dataset(**options: Any) -> dict[str, Any]:
    return {"name": "shapes", "options": {"image_size": 32, "train": 16, "val": 8, "test": 8, **options}}


def tiny_suite(output: Path, **overrides: Any) -> dict[str, Any]:
    """A suite of the three task kinds x the three built-in strategies, one seed, one epoch."""
    suite: dict[str, Any] = {
        "name": "tiny",
        "output": str(output),
        "seeds": [0],
        "baseline": "scratch",
        "device": "cpu",
        "training": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "threads": 2},
        "tasks": [
            {"name": "cls", "kind": "classification", "dataset": tiny_dataset()},
            {"name": "det", "kind": "detection", "dataset": tiny_dataset(), "options": TINY_DETECTION},
            {"name": "seg", "kind": "segmentation", "dataset": tiny_dataset()},
        ],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "scratch"}, {"name": "linear_probe"}, {"name": "full"}],
    }
    suite.update(copy.deepcopy(overrides))
    if suite.get("baseline") not in [s.get("label", s["name"]) for s in suite["strategies"]]:
        suite.pop("baseline", None)
    return suite


def to_toml(data: dict[str, Any]) -> str:
    """Just enough TOML writing for the suites the tests build (tables of scalars, lists, inline tables)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines, tables = [], []
    for key, v in data.items():
        if isinstance(v, dict):
            tables.append(f"[{key}]\n" + "\n".join(f"{k} = {value(x)}" for k, x in v.items()))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                tables.append(f"[[{key}]]\n" + "\n".join(f"{k} = {value(x)}" for k, x in item.items()))
        else:
            lines.append(f"{key} = {value(v)}")
    return "\n".join(lines) + "\n\n" + "\n\n".join(tables) + "\n"


def plugin_entries(listing: str) -> dict[tuple[str, str], str]:
    """`bench plugins`' output by (kind, name): each entry's first line and the indented lines under it."""
    entries: dict[tuple[str, str], str] = {}
    key = ("", "")
    for line in listing.splitlines():
        if line.strip() and not line[0].isspace():
            kind, name, *_ = [*line.split(), ""]
            key = (kind, name)
        entries[key] = entries.get(key, "") + line + "\n"
    return entries


@pytest.fixture
def write_suite(tmp_path: Path):
    def write(data: dict[str, Any], name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(to_toml(data))
        return path

    return write


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry(entry_points=False)


@pytest.fixture(autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)

"""The search summaries a results directory holds (`search/<key>.json`, written by `harness.search`):
read without Optuna or the planning modules, so a report stays light."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: the version of the search summary's layout
SUMMARY_VERSION = 1


def read_summaries(root: str | Path) -> list[dict[str, Any]]:
    """The search summaries of a results directory (none without a search/ folder)."""
    folder = Path(root) / "search"
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("version") == SUMMARY_VERSION:
            found.append(data)
    return found


def read_summary(root: str | Path, key: str) -> dict[str, Any] | None:
    """The summary of the search `key` in a results directory, None before its first trial is told."""
    path = Path(root) / "search" / f"{key}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == SUMMARY_VERSION else None

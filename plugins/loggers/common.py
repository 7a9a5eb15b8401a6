"""What the built-in loggers share: one lock, errors that never leave a hook, flattened settings."""

from __future__ import annotations

import contextlib
import json
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness import Logger


class GuardedLogger(Logger):
    """A logger whose hook bodies run under one lock and never raise.

    Events reach the driver from the executor's thread as well as the main one, so every hook
    body holds `self.lock`. A failure (a full disk, a store that refuses a value) must not fail
    the cell or lose its result: it is caught, the first one is reported as a warning (one line
    on stderr from the `bench` command), and the run goes on.
    """

    def __init__(self, options: BaseModel | dict[str, Any] | None = None, output: Path | None = None) -> None:
        super().__init__(options, output=output)
        self.lock = threading.RLock()
        self.errors = 0

    @contextlib.contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Run a hook body under the lock; an exception in it is reported (once) and swallowed."""
        try:
            with self.lock:
                yield
        except Exception as exc:
            self.errors += 1
            if self.errors == 1:
                text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                warnings.warn(
                    f'logger "{self.name}" failed while {what}: {text}; the run goes on and its results '
                    f"are kept, but the {self.name} logs may be incomplete",
                    RuntimeWarning,
                    stacklevel=3,
                )

    def report_errors(self) -> None:
        """At the end of a run: how many more failures there were after the first one reported."""
        if self.errors > 1:
            more = self.errors - 1
            warnings.warn(f'logger "{self.name}": {more} more failures after the first', RuntimeWarning, stacklevel=2)
        self.errors = 0


def flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"training": {"lr": 0.1}}` as `{"training.lr": "0.1"}`; lists and scalars as JSON (strings as is)."""
    flat: dict[str, str] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def hyperparameters(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a comparison of cells reads first: strategy, its options, lr, epochs, batch size, seed."""
    training = settings.get("training", {})
    strategy = settings.get("strategy", {})
    task = settings.get("task", {})
    values = {
        "task_kind": task.get("kind"),
        "dataset": task.get("dataset", {}).get("name"),
        "backbone": settings.get("backbone", {}).get("name"),
        "weights": settings.get("backbone", {}).get("weights"),
        "strategy": strategy.get("name"),
        "strategy_options": json.dumps(strategy.get("options", {}), sort_keys=True, default=str),
        "lr": training.get("lr"),
        "epochs": training.get("epochs"),
        "max_steps": training.get("max_steps"),
        "batch_size": training.get("batch_size"),
        "optimizer": training.get("optimizer"),
        "schedule": training.get("schedule"),
        "seed": settings.get("seed"),
    }
    return {k: v for k, v in values.items() if v is not None}

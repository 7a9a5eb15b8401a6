"""A plugin as an importable reference: what another process imports to rebuild this one's registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PluginRef:
    """An extra plugin by import path: a module (`pkg.mod`) or a class to instantiate (`pkg.mod:Class`)."""

    target: str
    provider: str

    def load(self) -> object:
        module_name, _, qualname = self.target.partition(":")
        found: Any = importlib.import_module(module_name)
        if not qualname:
            return found
        for part in qualname.split("."):
            found = getattr(found, part)
        return found()

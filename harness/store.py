"""The results directory: one JSON document per cell, written atomically, plus a manifest.

Layout::

    <output>/manifest.json        the suite run: suite file, cells, harness version
    <output>/cells/<key>.json     one CellResult per cell
    <output>/pretrain/<key>.pt    checkpoints of pretraining stages (+ <key>.json)
    <output>/models/<key>.pt      trained models other cells learn from (distillation teachers)
    <output>/claims/<key>.json    who runs a job right now (harness.claims)

A file is either absent or complete: it is written to a temporary file in the same folder,
flushed to disk and renamed over the target.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.claims import Claims
from harness.errors import BenchError
from harness.result import CellResult


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from other users of the machine
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.pretrain_dir = self.root / "pretrain"
        self.models_dir = self.root / "models"
        self.claims = Claims(self.root / "claims")

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def save(self, result: CellResult) -> None:
        write_json(self.cell_path(result.key), result.to_json())

    def load(self, key: str, directory: Path | None = None) -> CellResult | None:
        path = (directory or self.cells_dir) / f"{key}.json"
        try:
            return CellResult.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError):
            return None  # unreadable: treat as not done, it will be recomputed

    def is_done(self, key: str, needs_model: bool = False) -> bool:
        """Finished `ok` (with its trained model saved, when another cell learns from it)."""
        result = self.load(key)
        done = result is not None and result.status == "ok"
        return done and (not needs_model or self.model_path(key).is_file())

    def results(self) -> list[CellResult]:
        found = []
        for path in sorted(self.cells_dir.glob("*.json")):
            result = self.load(path.stem)
            if result is not None:
                found.append(result)
        return found

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.root / "manifest.json", manifest)

    def manifest(self) -> dict[str, Any]:
        path = self.root / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    # pretraining checkpoints
    def checkpoint_path(self, key: str) -> Path:
        return self.pretrain_dir / f"{key}.pt"

    def model_path(self, key: str) -> Path:
        """A cell's trained task model, kept when another cell learns from it."""
        return self.models_dir / f"{key}.pt"

    def save_pretrain(self, result: CellResult) -> None:
        write_json(self.pretrain_dir / f"{result.key}.json", result.to_json())

    def load_pretrain(self, key: str) -> CellResult | None:
        return self.load(key, self.pretrain_dir)

    def is_pretrained(self, key: str) -> bool:
        """A pretraining stage finished `ok` and its checkpoint is there."""
        result = self.load_pretrain(key)
        return result is not None and result.status == "ok" and self.checkpoint_path(key).is_file()


def planned_results(path: str | Path) -> list[CellResult]:
    """The results of the suite's latest plan, in plan order, labelled as the plan labels them."""
    store = Store(Path(path))
    if not store.cells_dir.is_dir():
        raise BenchError(f"{path}: not a results directory (no cells/ folder)")
    manifest = store.manifest()
    order = {key: i for i, key in enumerate(manifest.get("cells", []))}
    results = store.results()
    if order:  # only the cells of the latest plan, in plan order
        results = sorted((r for r in results if r.key in order), key=lambda r: order[r.key])
    labels = manifest.get("labels", {})
    for result in results:
        for field, value in labels.get(result.key, {}).items():
            setattr(result, field, value)
    return results


def load_results(path: str | Path) -> pd.DataFrame:
    """Every cell of a results directory as one row: labels, status, metrics, cost, settings.

    Metric columns are ``metric.<name>`` (test split), ``val.<name>`` (validation split, final
    epoch: what model selection may use), cost columns ``cost.<field>``.
    Only cells of the suite's latest plan are included when a manifest lists them.
    """
    rows = []
    for result in planned_results(path):
        row: dict[str, Any] = {
            "key": result.key,
            "task": result.task,
            "task_kind": result.settings["task"]["kind"],
            "metric": result.settings["task"].get("metric"),
            "backbone": result.backbone,
            "strategy": result.strategy,
            "setting": result.setting,
            "batchnorm": result.settings.get("strategy", {}).get("batchnorm"),
            "seed": result.seed,
            "status": result.status,
            "reason": result.reason,
            "best_epoch": result.best.get("epoch"),
            "best_val": result.best.get("value"),
        }
        row.update({f"metric.{k}": v for k, v in result.metrics.items()})
        row.update({f"val.{k}": v for k, v in (result.curve[-1]["val"] if result.curve else {}).items()})
        row.update({f"cost.{k}": v for k, v in vars(result.cost).items()})
        rows.append(row)
    return pd.DataFrame(rows)

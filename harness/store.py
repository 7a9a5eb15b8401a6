"""The results directory: one JSON document per cell, written atomically, plus a manifest.

Layout::

    <output>/manifest.json        the suite's runs: suite file, cells and labels of each run
    <output>/cells/<key>.json     one CellResult per cell
    <output>/cells/corrupt/       unreadable cell documents `bench run` moved aside
    <output>/pretrain/<key>.pt    checkpoints of pretraining stages (+ <key>.json, + <key>.pt.sha256)
    <output>/models/<key>.pt      trained models other cells learn from (distillation teachers, + .sha256)
    <output>/claims/<key>.json    who runs a job right now (harness.claims)

A file is either absent or complete: it is written to a temporary file in the same folder,
flushed to disk and renamed over the target. Every JSON document carries ``"schema"``
(`SCHEMA`); one without it is read as version 1. A document this version cannot read is
*corrupt* (not JSON, not an object, missing fields or fields of the wrong type) or *newer*
(a higher schema, or fields this version does not know): it is never taken as a result, never
overwritten, and reported (`Store.skipped`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.claims import Claims
from harness.errors import BenchError
from harness.result import STATUSES, CellResult, Cost

#: version of the cell, pretraining and manifest documents this bench writes
SCHEMA = 1
#: a temporary file of `write_atomically` older than this was left by a killed writer
STALE_TMP_SECONDS = 3600.0


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class WriteFailed(OSError):
    """A file of the results directory could not be written (a full disk, a read-only folder)."""


def write_checkpoint(path: Path, data: bytes) -> None:
    """A checkpoint and its sidecar `<path>.sha256`, the sidecar first: a kill in between leaves a
    checkpoint that does not match its hash (rebuilt), never one that is trusted but incomplete.

    A failed write raises `WriteFailed`, which stops the suite rather than failing one cell.
    """
    try:
        write_atomically(hash_path(path), (hashlib.sha256(data).hexdigest() + "\n").encode())
        write_atomically(path, data)
    except OSError as exc:
        raise WriteFailed(exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc


def hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint cannot be used (absent, or not matching its recorded sha256), or None.

    A checkpoint without a sidecar (written before hashes were recorded) is trusted as it is.
    """
    if not path.is_file():
        return f"{path} is missing"
    try:
        recorded = hash_path(path).read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{hash_path(path)} is unreadable ({exc})"
    if sha256_of(path) != recorded:
        return f"{path} does not match its recorded sha256 (truncated or changed)"
    return None


Kind = Literal["corrupt", "newer"]


@dataclass(frozen=True)
class Skipped:
    """A file of the results directory this version could not take: why, and what kind of problem."""

    path: Path
    kind: Kind
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: corrupt: {self.reason}" if self.kind == "corrupt" else f"{self.path}: {self.reason}"


class NotOverwritten(BenchError):
    """A result was not written over a document a newer bench wrote."""


class UnreadableDocument(Exception):
    def __init__(self, kind: Kind, reason: str) -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


_FIELDS = {f.name for f in dataclasses.fields(CellResult)}
_COST_FIELDS = {f.name for f in dataclasses.fields(Cost)}
_REQUIRED = ("key", "status", "task", "backbone", "strategy", "seed", "settings")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "key": str,
    "status": str,
    "task": str,
    "backbone": str,
    "strategy": str,
    "seed": int,
    "settings": dict,
    "setting": str,
    "metrics": dict,
    "per_image": dict,
    "lower_is_better": list,
    "best": dict,
    "curve": list,
    "cost": dict,
    "reason": (str, type(None)),
    "traceback": (str, type(None)),
    "provenance": dict,
    "data": dict,
    "started_at": str,
    "finished_at": str,
}


def _schema(data: dict[str, Any]) -> int:
    schema = data.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise UnreadableDocument("corrupt", f"schema {schema!r} is not a version number")
    if schema > SCHEMA:
        raise UnreadableDocument("newer", f"written by a newer bench (schema {schema}; this bench reads {SCHEMA})")
    return schema


def parse_result(data: Any) -> CellResult:
    """A cell document as a CellResult; `UnreadableDocument` says why not."""
    if not isinstance(data, dict):
        raise UnreadableDocument("corrupt", f"a JSON {type(data).__name__}, not an object")
    _schema(data)
    unknown = sorted(set(data) - _FIELDS - {"schema"})
    cost = data.get("cost", {})
    if isinstance(cost, dict):
        unknown += sorted(f"cost.{name}" for name in set(cost) - _COST_FIELDS)
    if unknown:
        raise UnreadableDocument("newer", f"written by a newer or other bench: unknown fields {', '.join(unknown)}")
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise UnreadableDocument("corrupt", f"missing {', '.join(missing)}")
    for name, types in _TYPES.items():
        if name in data and (not isinstance(data[name], types) or (name == "seed" and isinstance(data[name], bool))):
            raise UnreadableDocument("corrupt", f"{name} is a {type(data[name]).__name__}")
    if data["status"] not in STATUSES:
        raise UnreadableDocument("corrupt", f"unknown status {data['status']!r}")
    _check_curve(data.get("curve", []))
    _check_per_image(data.get("per_image", {}))
    try:
        return CellResult.from_json({k: v for k, v in data.items() if k != "schema"})
    except (TypeError, ValueError) as exc:
        raise UnreadableDocument("corrupt", str(exc)) from None


def _check_curve(curve: list[Any]) -> None:
    """Each curve entry is an object whose `val`, if given, is an object (what the report and plots read)."""
    for i, entry in enumerate(curve):
        if not isinstance(entry, dict):
            raise UnreadableDocument("corrupt", f"curve[{i}] is a {type(entry).__name__}, not an object")
        if not isinstance(entry.get("val", {}), dict):
            raise UnreadableDocument("corrupt", f"curve[{i}].val is a {type(entry['val']).__name__}, not an object")


def _check_per_image(per_image: dict[str, Any]) -> None:
    """Each metric's per-image scores are a list of numbers (what the report's bootstrap reads)."""
    for metric, scores in per_image.items():
        if not isinstance(scores, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scores
        ):
            raise UnreadableDocument("corrupt", f"per_image.{metric} is not a list of numbers")


#: the largest document read: cells with long curves are tens of kilobytes
MAX_DOCUMENT_BYTES = 64 * 2**20


def read_document(path: Path) -> Any:
    """A JSON file's content; `UnreadableDocument` when it is not JSON (truncated, binary).

    Only regular files up to `MAX_DOCUMENT_BYTES` are read: a cell document is kilobytes, and a
    symlink to /dev/zero or a file blown up to gigabytes must not take the machine's memory.
    """
    try:
        info = path.stat()
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise UnreadableDocument("corrupt", f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableDocument("corrupt", "not a regular file")
    if info.st_size > MAX_DOCUMENT_BYTES:
        raise UnreadableDocument("corrupt", f"{info.st_size} bytes, more than a result document can be")
    try:
        return json.loads(path.read_bytes())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UnreadableDocument("corrupt", f"not JSON ({exc})") from None


@dataclass
class Manifest:
    """The manifest as read: its content ({} when absent or unreadable) and the problem, if any."""

    data: dict[str, Any] = field(default_factory=dict)
    problem: Skipped | None = None


class Store:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.pretrain_dir = self.root / "pretrain"
        self.models_dir = self.root / "models"
        self.claims = Claims(self.root / "claims")
        #: files skipped while reading, by path: corrupt or written by a newer bench
        self.problems: dict[Path, Skipped] = {}
        #: checkpoints found not to match their hash (treated as absent), by path
        self.bad_checkpoints: dict[Path, str] = {}
        self._verified: dict[Path, tuple[int, int, int]] = {}

    @property
    def skipped(self) -> list[Skipped]:
        return list(self.problems.values())

    def cell_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def save(self, result: CellResult) -> None:
        self._save(self.cell_path(result.key), result)

    def _save(self, path: Path, result: CellResult) -> None:
        """Write a result, never over a document this version cannot read because a newer bench wrote it."""
        problem = self.problem(path)
        if problem is not None and problem.kind == "newer":
            raise NotOverwritten(f"{path}: {problem.reason}; not overwritten")
        write_json(path, {"schema": SCHEMA, **result.to_json()})

    def read(self, path: Path) -> CellResult | None:
        """The result in `path`: None when absent or unreadable (then recorded in `problems`)."""
        self.problems.pop(path, None)
        try:
            return parse_result(read_document(path))
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            self.problems[path] = Skipped(path, "corrupt", "a directory, not a file")
        except OSError as exc:
            self.problems[path] = Skipped(path, "corrupt", f"cannot be read ({exc.strerror or exc})")
        except UnreadableDocument as exc:
            self.problems[path] = Skipped(path, exc.kind, exc.reason)
        return None

    def problem(self, path: Path) -> Skipped | None:
        """Why the document at `path` cannot be read by this version (None: absent or fine)."""
        self.read(path)
        return self.problems.get(path)

    def load(self, key: str, directory: Path | None = None) -> CellResult | None:
        return self.read((directory or self.cells_dir) / f"{key}.json")

    def is_done(self, key: str, needs_model: bool = False) -> bool:
        """Finished `ok` (with its trained model saved and intact, when another cell learns from it)."""
        result = self.load(key)
        done = result is not None and result.status == "ok"
        return done and (not needs_model or self.checkpoint_ok(self.model_path(key)))

    def results(self) -> list[CellResult]:
        found = []
        for path in sorted(self.cells_dir.glob("*.json")):
            result = self.read(path)
            if result is not None:
                found.append(result)
        return found

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        write_json(self.root / "manifest.json", {**manifest, "schema": SCHEMA})

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def read_manifest(self) -> Manifest:
        path = self.manifest_path
        try:
            data = read_document(path)
            if not isinstance(data, dict):
                raise UnreadableDocument("corrupt", f"a JSON {type(data).__name__}, not an object")
            _schema(data)
            for name, kind in (("cells", list), ("labels", dict), ("runs", list), ("settings", dict)):
                if name in data and not isinstance(data[name], kind):
                    raise UnreadableDocument("corrupt", f"{name} is a {type(data[name]).__name__}")
            for run in data.get("runs", []):
                if not isinstance(run, dict) or not isinstance(run.get("cells", []), list):
                    raise UnreadableDocument("corrupt", "runs holds something that is not a run")
        except FileNotFoundError:
            return Manifest()
        except OSError as exc:
            return Manifest(problem=Skipped(path, "corrupt", f"cannot be read ({exc.strerror or exc})"))
        except UnreadableDocument as exc:
            return Manifest(problem=Skipped(path, exc.kind, exc.reason))
        return Manifest(data)

    def manifest(self) -> dict[str, Any]:
        """The manifest, or {} when there is none or it cannot be read (recorded in `problems`)."""
        read = self.read_manifest()
        if read.problem is not None:
            self.problems[read.problem.path] = read.problem
        return read.data

    # integrity upkeep (`bench run`)
    def move_aside(self, path: Path) -> Path:
        """Move an unreadable file to `corrupt/` next to it (a new name if one is there); the new path."""
        target = path.parent / "corrupt" / path.name
        n = 1
        while target.exists():
            n += 1
            target = path.parent / "corrupt" / f"{path.stem}.{n}{path.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        self.problems.pop(path, None)
        return target

    def remove_stale_tmp(self, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
        """Remove temporary files of `write_atomically` left by killed writers (older than `older_than` s).

        A live writer's temporary file is written in one go, seconds at most; one this old is abandoned.
        """
        removed = []
        now = time.time()
        for folder in (self.root, self.cells_dir, self.pretrain_dir, self.models_dir):
            for path in folder.glob(".*.tmp"):
                try:
                    if now - path.stat().st_mtime > older_than:
                        path.unlink()
                        removed.append(path)
                except OSError:
                    continue  # gone already, or a read-only directory: nothing to do about it
        return removed

    # pretraining checkpoints and kept models
    def checkpoint_path(self, key: str) -> Path:
        return self.pretrain_dir / f"{key}.pt"

    def model_path(self, key: str) -> Path:
        """A cell's trained task model, kept when another cell learns from it."""
        return self.models_dir / f"{key}.pt"

    def checkpoint_ok(self, path: Path) -> bool:
        """The checkpoint is there and matches its recorded sha256 (hashed once per version of the files)."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        try:
            sidecar = hash_path(path).stat().st_mtime_ns
        except FileNotFoundError:
            sidecar = 0
        stamp = (stat.st_mtime_ns, stat.st_size, sidecar)
        if self._verified.get(path) != stamp:
            problem = checkpoint_problem(path)
            self._verified[path] = stamp
            if problem is not None:
                self.bad_checkpoints[path] = problem
            else:
                self.bad_checkpoints.pop(path, None)
        return path not in self.bad_checkpoints

    def save_pretrain(self, result: CellResult) -> None:
        self._save(self.pretrain_dir / f"{result.key}.json", result)

    def load_pretrain(self, key: str) -> CellResult | None:
        return self.load(key, self.pretrain_dir)

    def is_pretrained(self, key: str) -> bool:
        """A pretraining stage finished `ok` and its checkpoint is there and intact."""
        result = self.load_pretrain(key)
        return result is not None and result.status == "ok" and self.checkpoint_ok(self.checkpoint_path(key))


def manifest_runs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a manifest records, oldest first; a manifest without a history is one run."""
    runs = manifest.get("runs")
    if isinstance(runs, list):
        return [run for run in runs if isinstance(run, dict)]
    if "cells" in manifest:
        return [{"cells": manifest.get("cells", []), "labels": manifest.get("labels", {})}]
    return []


@dataclass
class Planned:
    """The results of a results directory as the report takes them, and the files it skipped."""

    results: list[CellResult]
    skipped: list[Skipped]
    manifest: dict[str, Any]


def _identity(result: CellResult) -> tuple[Any, ...]:
    return (result.task, result.backbone, result.strategy, result.setting, result.seed)


def read_planned(path: str | Path) -> Planned:
    """Every cell planned by any run of the suite, in plan order, labelled by the latest run that planned it.

    A cell whose labels (task, backbone, strategy, setting, seed) a later run gave to another cell
    (the suite's settings changed since) is left out: the later run's cell replaces it. Without a
    readable manifest, or with one that lists none of the cells on disk, every cell of the directory is taken.
    """
    store = Store(Path(path))
    if not store.cells_dir.is_dir():
        raise BenchError(f"{path}: not a results directory (no cells/ folder)")
    manifest = store.manifest()
    runs = manifest_runs(manifest)
    results = store.results()
    if not runs:
        return Planned(results, store.skipped, manifest)
    by_key = {r.key: r for r in results}
    chosen = _latest_cells(runs, by_key)
    if not chosen:  # the manifest lists none of the cells on disk (keys that are gone): take the cells
        return Planned(results, store.skipped, manifest)
    order: dict[str, int] = {}
    for run in runs:  # plan order: oldest run first, each cell where it was first planned
        for key in run.get("cells", []):
            if isinstance(key, str) and key in chosen and key not in order:
                order[key] = len(order)
    ordered = sorted((by_key[key] for key in chosen), key=lambda r: order[r.key])
    return Planned(ordered, store.skipped, manifest)


def _latest_cells(runs: list[dict[str, Any]], by_key: dict[str, CellResult]) -> set[str]:
    """The keys of the cells the runs planned, newest run first: its labels (given to the results), and
    its cells over older ones with the same labels."""
    taken: set[tuple[Any, ...]] = set()
    chosen: set[str] = set()
    for run in reversed(runs):
        run_labels = run.get("labels", {}) if isinstance(run.get("labels"), dict) else {}
        this_run: set[tuple[Any, ...]] = set()  # a cell is replaced by a later run's, not by its own run's
        for key in run.get("cells", []):
            if not isinstance(key, str) or key in chosen or key not in by_key:
                continue
            result = by_key[key]
            _relabel(result, run_labels.get(key))
            if _identity(result) in taken:
                continue
            chosen.add(key)
            this_run.add(_identity(result))
        taken |= this_run
    return chosen


def _relabel(result: CellResult, given: Any) -> None:
    """Give `result` the labels a run planned it with (a suite's labels may change between runs)."""
    for name, value in given.items() if isinstance(given, dict) else ():
        if name in ("task", "backbone", "strategy", "setting") and isinstance(value, str):
            setattr(result, name, value)


def _warn_skipped(skipped: list[Skipped]) -> None:
    for problem in skipped:
        warnings.warn(f"skipped {problem}", stacklevel=3)


def planned_results(path: str | Path) -> list[CellResult]:
    """The cells of every run of the suite (`read_planned`); a warning for each file it skipped."""
    planned = read_planned(path)
    _warn_skipped(planned.skipped)
    return planned.results


def results_frame(results: list[CellResult]) -> pd.DataFrame:
    """One row per result: labels, status, metrics, cost, settings."""
    rows = []
    for result in results:
        task = result.settings.get("task", {})
        row: dict[str, Any] = {
            "key": result.key,
            "task": result.task,
            "task_kind": task.get("kind"),
            "metric": task.get("metric"),
            "backbone": result.backbone,
            "strategy": result.strategy,
            "setting": result.setting,
            "batchnorm": result.settings.get("strategy", {}).get("batchnorm"),
            "seed": result.seed,
            "status": result.status,
            "reason": result.reason,
            "best_epoch": result.best.get("epoch"),
            "best_val": result.best.get("value"),
            "lower_is_better": list(result.lower_is_better),
        }
        row.update({f"metric.{k}": v for k, v in result.metrics.items()})
        row.update({f"per_image.{k}": v for k, v in result.per_image.items()})
        row.update({f"trivial.{k}": v for k, v in result.trivial.items()}, trivial_predictor=result.trivial_predictor)
        row.update({f"val.{k}": v for k, v in (result.curve[-1].get("val", {}) if result.curve else {}).items()})
        row.update({f"cost.{k}": v for k, v in vars(result.cost).items()})
        rows.append(row)
    return pd.DataFrame(rows)


def load_results(path: str | Path) -> pd.DataFrame:
    """Every cell of a results directory as one row: labels, status, metrics, cost, settings.

    Metric columns are ``metric.<name>`` (test split), ``val.<name>`` (validation split, final
    epoch: what model selection may use), cost columns ``cost.<field>``.
    The cells of every run the manifest records (`read_planned`); files that cannot be read are
    left out with a warning each, and listed in ``frame.attrs["skipped"]``.
    """
    planned = read_planned(path)
    _warn_skipped(planned.skipped)
    frame = results_frame(planned.results)
    frame.attrs["skipped"] = [str(problem) for problem in planned.skipped]
    return frame

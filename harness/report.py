"""The report: per task, each backbone x strategy over seeds, its gain over the baseline, its cost, its ROI.

Everything is computed with pandas on `load_results`' frame; reporters only format it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from harness.errors import BenchError
from harness.store import Store, load_results

DEFINITIONS = (
    "mean ± std over seeds (n = seeds with status ok), test split. "
    "gain = mean - mean of the baseline strategy on the same task and backbone. "
    "train time = mean wall seconds of training (validation excluded) on one device. "
    "peak memory = CUDA max allocated, or the process's peak RSS on the CPU. "
    "ROI = gain per device-hour of training."
)


@dataclass
class TaskTable:
    task: str
    kind: str
    metric: str
    baseline: str | None
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)


@dataclass
class Report:
    source: str
    tables: list[TaskTable]
    definitions: str = DEFINITIONS

    def to_frame(self) -> pd.DataFrame:
        """All tables in one frame with `task`, `kind` and `metric` columns (CSV, JSON)."""
        frames = [t.rows.assign(task=t.task, kind=t.kind, metric=t.metric, baseline=t.baseline) for t in self.tables]
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        first = ["task", "kind", "metric", "baseline"]
        return frame[first + [c for c in frame.columns if c not in first]]


def build_report(
    path: str | Path, baseline: str | None = None, metric: str | None = None, all_settings: bool = False
) -> Report:
    """Read a results directory and compute every table of the report.

    A strategy swept over several settings is shown at the one with the best validation score
    (or at every setting, with `all_settings`); the test split never takes part in the choice.
    """
    frame = load_results(path)
    if frame.empty:
        raise BenchError(f"{path}: no results yet")
    if baseline is None:
        baseline = Store(Path(path)).manifest().get("settings", {}).get("baseline")
    elif baseline not in set(frame["strategy"]):
        allowed = ", ".join(dict.fromkeys(frame["strategy"]))
        raise BenchError(f"--baseline: unknown strategy {baseline!r}; allowed: {allowed}")
    reported = [c.removeprefix("metric.") for c in frame.columns if c.startswith("metric.")]
    if metric is not None and metric not in reported:
        raise BenchError(f"--metric: no task reports {metric!r}; allowed: {', '.join(reported)}")
    tables = [
        _task_table(str(task), rows, baseline, metric, all_settings) for task, rows in frame.groupby("task", sort=False)
    ]
    return Report(str(path), tables)


def _select_settings(table: pd.DataFrame) -> pd.DataFrame:
    """Mark, per backbone x strategy, the setting with the best mean validation score."""
    table = table.assign(selected=False)
    for _, part in table.groupby(["backbone", "strategy"], sort=False):
        scored = part["val_mean"].dropna()
        best = scored.idxmax() if len(scored) else part.index[0]
        table.loc[best, "selected"] = True
    return table


def _status_text(statuses: pd.Series, reasons: pd.Series) -> str:
    counts = statuses.value_counts()
    if list(counts.index) == ["ok"]:
        return "ok"
    parts = [f"{n} {status}" for status, n in counts.items()]
    reason = next((r for s, r in zip(statuses, reasons, strict=True) if s != "ok" and r), None)
    return ", ".join(parts) + (f": {reason}" if reason else "")


def _task_table(
    task: str, rows: pd.DataFrame, baseline: str | None, metric: str | None, all_settings: bool
) -> TaskTable:
    kind = str(rows["task_kind"].iloc[0])
    if metric is None or rows.get(f"metric.{metric}", pd.Series(dtype=float)).isna().all():
        metric = str(rows["metric"].iloc[0])  # the suite's metric for tasks that do not report the one asked for
    column, val_column = f"metric.{metric}", f"val.{metric}"
    notes = []
    for name in (column, val_column):
        if name not in rows:
            rows = rows.assign(**{name: float("nan")})
    if "setting" not in rows:
        rows = rows.assign(setting="")
    ok = rows[rows["status"] == "ok"]
    groups = []
    for (backbone, strategy, setting), group in rows.groupby(["backbone", "strategy", "setting"], sort=False):
        good = ok[(ok["backbone"] == backbone) & (ok["strategy"] == strategy) & (ok["setting"] == setting)]
        values = good[column].astype(float)
        train_seconds = good["cost.train_seconds"].astype(float).mean()
        trainable = good["cost.trainable_params"].max() if len(good) else float("nan")
        total = good["cost.total_params"].max() if len(good) else float("nan")
        groups.append(
            {
                "backbone": backbone,
                "strategy": strategy,
                "setting": setting,
                "n": len(values),
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(values) > 1 else float("nan"),
                "val_mean": good[val_column].astype(float).mean(),
                "train_seconds": train_seconds,
                "train_device_hours": train_seconds / 3600,
                "samples_per_second": good["cost.samples_per_second"].astype(float).mean(),
                "peak_memory_mib": good["cost.peak_memory_bytes"].astype(float).max() / 2**20,
                "trainable_params": trainable,
                "total_params": total,
                "trainable_pct": 100 * trainable / total if total else float("nan"),
                "flops_per_sample": good["cost.flops_per_sample"].astype(float).mean(),
                "status": _status_text(group["status"], group["reason"]),
            }
        )
    table = _select_settings(pd.DataFrame(groups))
    if (table.groupby(["backbone", "strategy"], sort=False).size() > 1).any():
        notes.append(
            f"strategies with several settings are shown at the setting with the best validation {metric} "
            "(final epoch, mean over seeds); the test split plays no part in the choice"
        )
    if not all_settings:
        table = table[table["selected"]].reset_index(drop=True)
    table["gain"] = float("nan")
    if baseline is None:
        notes.append("no baseline strategy set: gains and ROI are not computed")
    else:
        for backbone_key, part in table.groupby("backbone", sort=False):
            backbone = str(backbone_key)
            base = part[(part["strategy"] == baseline) & part["selected"]]
            if base.empty or pd.isna(base["mean"].iloc[0]):
                notes.append(f"no ok {baseline!r} result for backbone {backbone}: its gains are not computed")
                continue
            table.loc[part.index, "gain"] = part["mean"] - base["mean"].iloc[0]
    table["roi_per_device_hour"] = table["gain"] / table["train_device_hours"]
    devices = ok["cost.device_name"].dropna().unique()
    if len(devices) > 1:
        notes.append(f"costs were measured on different devices ({', '.join(map(str, devices))})")
    elif len(devices) == 1:
        notes.append(f"costs measured on {devices[0]}")
    return TaskTable(task, kind, metric, baseline, table, notes)

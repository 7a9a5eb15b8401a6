"""What each strategy's tuning cost and found, for the report: from the search summaries and the
trial cells they name (`harness.search` writes both).

Tuning device-hours are the trials' own training time (the same measure as a row's device-h), so
"final runs plus tuning" is what adopting a strategy really costs, and a table whose strategies
had unequal budgets can say so.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from harness.formatting import significant_figures
from harness.search_summary import read_summaries
from harness.store import Store

#: the tuning columns a report row gains (NaN / 0 / "" for a strategy that was not searched)
TUNING_COLUMNS = ("method", "budget", "trials", "pruned", "failed", "tuning_device_hours", "best_val_search",
                  "importances")  # fmt: skip


def tuning_frame(path: str | Path) -> pd.DataFrame:
    """One row per search (task x backbone x strategy): its budget, what ran, its device-hours, best score."""
    store = Store(Path(path))
    rows = []
    for summary in read_summaries(path):
        trials = summary.get("trials", [])
        seconds = 0.0
        for trial in trials:
            result = store.load(trial["cell"]) if trial.get("cell") else None
            if result is not None:
                seconds += float(result.cost.train_seconds or 0.0)
        best = summary.get("best") or {}
        importances = summary.get("importances") or {}
        rows.append(
            {
                "task": summary["task"],
                "backbone": summary["backbone"],
                "strategy": summary["strategy"],
                "method": summary.get("method", ""),
                "budget": int(summary.get("budget", 0)),
                "trials": sum(t["state"] in ("complete", "pruned", "fail") for t in trials),
                "pruned": sum(t["state"] == "pruned" for t in trials),
                "failed": sum(t["state"] == "fail" for t in trials),
                "tuning_device_hours": seconds / 3600,
                "best_val_search": best.get("value", math.nan),
                "importances": ", ".join(
                    f"{p.partition('.')[2]} {v:.2f}" for p, v in sorted(importances.items(), key=lambda kv: -kv[1])
                ),
            }
        )
    return pd.DataFrame(rows, columns=["task", "backbone", "strategy", *TUNING_COLUMNS])


def with_tuning(table: pd.DataFrame, tuning: pd.DataFrame) -> pd.DataFrame:
    """The task table's rows with their search's columns (a strategy not searched: 0 trials)."""
    merged = table.merge(tuning.drop(columns=["task"]), on=["backbone", "strategy"], how="left")
    merged[["trials", "pruned", "failed", "budget"]] = merged[["trials", "pruned", "failed", "budget"]].fillna(0)
    merged["tuning_device_hours"] = merged["tuning_device_hours"].fillna(0.0)
    merged[["method", "importances"]] = merged[["method", "importances"]].fillna("")
    return merged


def tuning_notes(table: pd.DataFrame) -> list[str]:
    """What the ROI with tuning divides by, and a warning when the strategies had unequal trial budgets."""
    if "trials" not in table or not (table["trials"] > 0).any():
        return []
    notes = [
        "tuned by search: trials trained with the search seed and were scored on the validation split; each row "
        "shows its search's chosen setting, run on the suite's seeds and scored on test; gain/device-h incl. "
        "tuning divides the gain by one final run plus every trial of its search (what adopting it costs)"
    ]
    budgets = {f"{r.strategy}": int(r.trials) for r in table.itertuples()}
    if len(set(budgets.values())) > 1:
        listed = ", ".join(f"{name} {n} trials" if n else f"{name} untuned" for name, n in budgets.items())
        notes.append(f"unequal tuning budgets ({listed}): a ranking here may reflect tuning effort, not the strategy")
    hours = table[table["trials"] > 0]
    spent = ", ".join(f"{r.strategy} {significant_figures(r.tuning_device_hours)} h" for r in hours.itertuples())
    notes.append(f"tuning device-hours: {spent}")
    return notes


def roi_with_tuning(table: pd.DataFrame) -> pd.Series:
    hours = sum(pd.to_numeric(table[c], errors="coerce").astype(float)
                for c in ("train_device_hours", "upstream_device_hours", "tuning_device_hours"))  # fmt: skip
    gain = pd.to_numeric(table["gain"], errors="coerce").astype(float)
    return gain / hours.where(hours > 0)  # no measured time (results without costs): no ROI

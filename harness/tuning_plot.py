"""`bench plot`'s tuning curves: per task, the best validation score found so far against trials
and against tuning device-hours, one line per searched strategy (backbone by line style), so a
reader sees whether a budget was enough and what each strategy's tuning cost to converge."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.plots import DEFAULT_DPI, _colours, _save, file_stem, pyplot
from harness.search_summary import read_summaries
from harness.store import Store


def best_so_far(values: list[float | None], minimize: bool) -> list[float]:
    """The running best of trial scores in trial order (NaN until a trial scored)."""
    best, found = math.nan, []
    for value in values:
        if value is not None and (math.isnan(best) or (value < best if minimize else value > best)):
            best = value
        found.append(best)
    return found


def tuning_curves(results: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Per task: each search's trials in order with their score, running best and cumulative device-hours."""
    store = Store(Path(results))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for summary in read_summaries(results):
        trials = sorted(summary.get("trials", []), key=lambda t: t["number"])
        hours, total = [], 0.0
        for trial in trials:
            result = store.load(trial["cell"]) if trial.get("cell") else None
            total += float(result.cost.train_seconds or 0.0) / 3600 if result is not None else 0.0
            hours.append(total)
        minimize = summary.get("direction") == "minimize"
        by_task.setdefault(summary["task"], []).append(
            {
                "backbone": summary["backbone"],
                "strategy": summary["strategy"],
                "metric": summary.get("metric", ""),
                "trials": [t["number"] + 1 for t in trials],
                "best": best_so_far([t.get("value") for t in trials], minimize),
                "device_hours": hours,
            }
        )
    return by_task


def write_tuning_plots(
    results: str | Path, folder: Path, formats: tuple[str, ...] = ("png",), dpi: int = DEFAULT_DPI
) -> list[Path]:
    """One figure per task with searches: best validation score so far vs trials and vs device-hours."""
    plt = pyplot()
    written: list[Path] = []
    styles = ["-", "--", ":", "-."]
    for task, curves in tuning_curves(results).items():
        colour = _colours(list(dict.fromkeys(c["strategy"] for c in curves)))
        backbones = list(dict.fromkeys(c["backbone"] for c in curves))
        fig, (by_trial, by_hours) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
        for c in curves:
            style = styles[backbones.index(c["backbone"]) % len(styles)]
            label = c["strategy"] if len(backbones) == 1 else f"{c['backbone']} / {c['strategy']}"
            by_trial.step(c["trials"], c["best"], style, where="post", color=colour[c["strategy"]], label=label)
            by_hours.step(c["device_hours"], c["best"], style, where="post", color=colour[c["strategy"]])
        metric = curves[0]["metric"]
        by_trial.set_xlabel("trials")
        by_hours.set_xlabel("tuning device-hours (cumulative)")
        for ax in (by_trial, by_hours):
            ax.set_ylabel(f"best validation {metric} so far")
            ax.grid(True, alpha=0.3)
        by_trial.legend(loc="lower right")
        fig.suptitle(f"{task}: tuning curves, one line per searched strategy")
        written += _save(fig, folder / f"{file_stem(task)}-tuning.png", formats, dpi)
    return written

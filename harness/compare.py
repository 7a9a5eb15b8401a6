"""`bench compare`: which cells changed beyond noise between two results directories.

Both runs go through `build_report` (every swept setting kept), so a cell here is the same
task x backbone x strategy x setting over seeds as in the report, and the test is the report's:
Welch's t-test on the per-seed values, with its interval for the difference.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pandas as pd

from harness.errors import BenchError
from harness.formatting import markdown_grid, number
from harness.report import ReportOptions, build_report
from harness.stats import ALPHA, welch

FORMATS = ("markdown", "csv", "json")
KEYS = ["task", "backbone", "strategy", "setting"]


def _cells(path: str | Path, metric: str | None) -> pd.DataFrame:
    report = build_report(path, ReportOptions(metric=metric, all_settings=True))
    for skipped in report.skipped:  # as `bench report` says them
        warnings.warn(f"skipped {skipped}", stacklevel=3)
    frame = report.to_frame()
    return frame[[*KEYS, "metric", "n", "mean", "ci_half_width", "seed_values", "samples_per_second", "status"]]


def compare_runs(run_a: str | Path, run_b: str | Path, metric: str | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """One row per cell of either run: both means, the difference with its interval, p, and a verdict."""
    if not 0 < alpha < 1:
        raise BenchError(f"--alpha: {alpha} is not between 0 and 1")
    a, b = _cells(run_a, metric), _cells(run_b, metric)
    both = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False)
    rows = []
    for row in both.to_dict("records"):
        values_a = row["seed_values_a"] if isinstance(row["seed_values_a"], list) else []
        values_b = row["seed_values_b"] if isinstance(row["seed_values_b"], list) else []
        diff = welch(values_b, values_a)
        significant = diff.significant(alpha)
        if row["_merge"] != "both":
            verdict = f"only in {'A' if row['_merge'] == 'left_only' else 'B'}"
        elif isinstance(row["metric_a"], str) and row["metric_a"] != row["metric_b"]:
            verdict = f"metric differs ({row['metric_a']} vs {row['metric_b']})"
        elif significant is None:
            verdict = "too few seeds to test" if values_a and values_b else "no ok result on a side"
        else:
            verdict = ("changed" if significant else "same within noise") if diff.diff else "identical"
        speed_a, speed_b = row["samples_per_second_a"], row["samples_per_second_b"]
        rows.append(
            {
                **{k: row[k] for k in KEYS},
                "metric": row["metric_a"] if isinstance(row["metric_a"], str) else row["metric_b"],
                "n_a": row["n_a"],
                "mean_a": row["mean_a"],
                "ci_half_width_a": row["ci_half_width_a"],
                "n_b": row["n_b"],
                "mean_b": row["mean_b"],
                "ci_half_width_b": row["ci_half_width_b"],
                "diff": diff.diff,
                "diff_ci_low": diff.low,
                "diff_ci_high": diff.high,
                "p_value": diff.p_value,
                "significant": significant,
                "verdict": verdict,
                "speed_ratio": speed_b / speed_a if speed_a and not math.isnan(speed_a) else math.nan,
                "status_a": row["status_a"],
                "status_b": row["status_b"],
            }
        )
    return pd.DataFrame(rows).assign(alpha=alpha)


def render_comparison(frame: pd.DataFrame, format: str) -> str:
    if format == "csv":
        return frame.to_csv(index=False)
    if format == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2) + "\n"
    header = ["task", "backbone", "strategy", "metric", "A (95% CI, n)", "B (95% CI, n)", "B - A (95% CI)", "p",
              "verdict", "speed B/A"]  # fmt: skip
    rows = []
    for r in frame.to_dict("records"):
        label = r["strategy"] + (f" ({r['setting']})" if r["setting"] else "")
        side = {
            s: "-"
            if pd.isna(r[f"n_{s}"])
            else f"{number(r[f'mean_{s}'])} ± {number(r[f'ci_half_width_{s}'])} ({r[f'n_{s}']:.0f})"
            for s in "ab"
        }
        diff = number(r["diff"], signed=True)
        if not math.isnan(r["diff_ci_low"]):
            diff += f" [{number(r['diff_ci_low'], signed=True)}, {number(r['diff_ci_high'], signed=True)}]"
        p = "-" if math.isnan(r["p_value"]) else f"{r['p_value']:.2g}"
        speed = "-" if math.isnan(r["speed_ratio"]) else f"{r['speed_ratio']:.2f}x"
        cells = [r["task"], r["backbone"], label, str(r["metric"]), side["a"], side["b"], diff, p, r["verdict"], speed]
        rows.append([str(c) for c in cells])
    changed = int((frame["verdict"] == "changed").sum())
    alpha = frame["alpha"].iloc[0] if len(frame) else ALPHA
    footer = (
        f"{changed} of {len(frame)} cells changed beyond noise (Welch's two-sided t-test over seeds, p < {alpha:g}); "
        "intervals are 95% Student-t (means) and Welch (difference); speed is training samples/s of B over A."
    )
    return markdown_grid(header, rows) + "\n\n" + footer + "\n"

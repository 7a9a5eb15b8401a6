"""`bench compare`: which cells changed beyond noise between two results directories.

Both runs go through `build_report` (every swept setting kept), so a cell here is the same
task x backbone x strategy x setting over seeds as in the report, and the test is the report's:
a paired t-test over the seeds both runs have (same seed, same data order and initialisation),
Welch's t-test when their seeds differ, with its interval for the difference. A comparison tests
every cell at once, so the p-values are Holm-corrected over all tested cells: of 720 unchanged
cells, 36 would otherwise pass p < 0.05 by chance and fail a gate.

`--fail-on` turns the comparison into a gate (`gate`): `regression` fails on a cell whose metric
dropped beyond noise, or that was ok in A and is not in B; `missing` fails on a cell of A that B
lacks. Every bench metric is higher-is-better, so a drop is B's mean below A's.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import BenchError
from harness.formatting import markdown_grid, number
from harness.report import ReportOptions, build_report
from harness.stats import ALPHA, holm, seed_difference

FORMATS = ("markdown", "csv", "json")
KEYS = ["task", "backbone", "strategy", "setting"]
#: what `bench compare --fail-on` may fail on
FAIL_ON = ("regression", "missing")


def _cells(path: str | Path, metric: str | None) -> pd.DataFrame:
    report = build_report(path, ReportOptions(metric=metric, all_settings=True))
    for skipped in report.skipped:  # as `bench report` says them
        warnings.warn(f"skipped {skipped}", stacklevel=3)
    frame = report.to_frame()
    columns = ["metric", "n", "mean", "ci_low", "ci_high", "ci_half_width", "seed_values", "seeds"]
    columns.append("samples_per_second")
    return frame[[*KEYS, *columns, "status"]]


def _side(r: dict[str, Any], s: str) -> str:
    """One run's mean and the bounds of its interval (clipped to the metric's range, so maybe asymmetric)."""
    if pd.isna(r[f"n_{s}"]):
        return "-"
    bounds = "" if pd.isna(r[f"ci_low_{s}"]) else f" [{number(r[f'ci_low_{s}'])}, {number(r[f'ci_high_{s}'])}]"
    return f"{number(r[f'mean_{s}'])}{bounds} ({r[f'n_{s}']:.0f})"


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
        diff = seed_difference(_by_seed(row, "b"), _by_seed(row, "a"))
        significant = diff.significant(alpha)
        verdict = _verdict(row, diff.diff, significant, bool(values_a and values_b))
        speed_a, speed_b = row["samples_per_second_a"], row["samples_per_second_b"]
        rows.append(
            {
                **{k: row[k] for k in KEYS},
                "metric": row["metric_a"] if isinstance(row["metric_a"], str) else row["metric_b"],
                "n_a": row["n_a"],
                "mean_a": row["mean_a"],
                "ci_low_a": row["ci_low_a"],
                "ci_high_a": row["ci_high_a"],
                "ci_half_width_a": row["ci_half_width_a"],
                "n_b": row["n_b"],
                "mean_b": row["mean_b"],
                "ci_low_b": row["ci_low_b"],
                "ci_high_b": row["ci_high_b"],
                "ci_half_width_b": row["ci_half_width_b"],
                "diff": diff.diff,
                "diff_ci_low": diff.low,
                "diff_ci_high": diff.high,
                "test": ("paired" if diff.test == "paired" else "Welch") if significant is not None else "",
                "p_value": diff.p_value,
                "significant": significant,
                "verdict": verdict,
                "speed_ratio": speed_b / speed_a if speed_a and not math.isnan(speed_a) else math.nan,
                "status_a": row["status_a"],
                "status_b": row["status_b"],
            }
        )
    frame = pd.DataFrame(rows).assign(alpha=alpha)
    return _holm_verdicts(frame, alpha) if len(frame) else frame.assign(p_holm=math.nan)


def _verdict(row: dict[str, Any], diff: float, significant: bool | None, both_ok: bool) -> str:
    """What happened to one cell (before Holm's correction, which `_holm_verdicts` applies)."""
    if row["_merge"] != "both":
        return f"only in {'A' if row['_merge'] == 'left_only' else 'B'}"
    if isinstance(row["metric_a"], str) and row["metric_a"] != row["metric_b"]:
        return f"metric differs ({row['metric_a']} vs {row['metric_b']})"
    if significant is None:
        return "too few seeds to test" if both_ok else "no ok result on a side"
    return ("changed" if significant else "same within noise") if diff else "identical"


def _by_seed(row: dict[str, Any], side: str) -> dict[int, float]:
    seeds, values = row[f"seeds_{side}"], row[f"seed_values_{side}"]
    if not isinstance(seeds, list) or not isinstance(values, list):
        return {}
    return dict(zip((int(s) for s in seeds), (float(v) for v in values), strict=True))


def _holm_verdicts(frame: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Holm-correct the tested cells' p-values together; `significant` and the verdict follow the corrected p."""
    tested = frame["significant"].map(lambda v: v is not None)
    frame["p_holm"] = math.nan
    frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p_value"].tolist())
    for index in frame.index[tested]:
        significant = bool(frame.at[index, "p_holm"] < alpha)
        frame.at[index, "significant"] = significant
        if frame.at[index, "verdict"] in ("changed", "same within noise"):
            frame.at[index, "verdict"] = "changed" if significant else "same within noise"
    return frame


def render_comparison(frame: pd.DataFrame, format: str) -> str:
    if format == "csv":
        return frame.to_csv(index=False)
    if format == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2) + "\n"
    header = ["task", "backbone", "strategy", "metric", "A (95% CI, n)", "B (95% CI, n)", "B - A (95% CI)", "p (Holm)",
              "verdict", "speed B/A"]  # fmt: skip
    rows = []
    for r in frame.to_dict("records"):
        label = r["strategy"] + (f" ({r['setting']})" if r["setting"] else "")
        side = {s: _side(r, s) for s in "ab"}
        diff = number(r["diff"], signed=True)
        if not math.isnan(r["diff_ci_low"]):
            diff += f" [{number(r['diff_ci_low'], signed=True)}, {number(r['diff_ci_high'], signed=True)}]"
        p = "-" if math.isnan(r["p_holm"]) else f"{r['p_holm']:.2g}"
        speed = "-" if math.isnan(r["speed_ratio"]) else f"{r['speed_ratio']:.2f}x"
        cells = [r["task"], r["backbone"], label, str(r["metric"]), side["a"], side["b"], diff, p, r["verdict"], speed]
        rows.append([str(c) for c in cells])
    changed = int((frame["verdict"] == "changed").sum())
    alpha = frame["alpha"].iloc[0] if len(frame) else ALPHA
    tests = frame.loc[frame["test"] != "", "test"].value_counts() if len(frame) else pd.Series(dtype=int)
    used = ", ".join(f"{n} {'paired over shared seeds' if t == 'paired' else 'Welch'}" for t, n in tests.items())
    footer = (
        f"{changed} of {len(frame)} cells changed beyond noise (two-sided t-tests over seeds: {used or 'none'}; "
        f"p-values Holm-corrected over the {int(tests.sum())} cells tested, changed when the corrected p < {alpha:g}); "
        "intervals are 95% (means: as in the report, clipped to [0, 1] for proportions; difference: its test's); "
        "speed is training samples/s of B over A."
    )
    return markdown_grid(header, rows) + "\n\n" + footer + "\n"


def parse_fail_on(values: Sequence[str] | None) -> frozenset[str]:
    """`--fail-on` values, repeated or comma-separated; a BenchError names an unknown one."""
    chosen = [v.strip() for value in values or () for v in value.split(",") if v.strip()]
    if values and not chosen:  # `--fail-on "$EMPTY"` in a CI script would otherwise gate nothing, silently
        raise BenchError(f"--fail-on: no value given; allowed: {', '.join(FAIL_ON)}")
    for value in chosen:
        if value not in FAIL_ON:
            raise BenchError(f"--fail-on: unknown value {value!r}; allowed: {', '.join(FAIL_ON)}")
    return frozenset(chosen)


@dataclass(frozen=True)
class Failure:
    """A cell that fails the gate. `kind`: `drop` (beyond noise) or `not ok` (ok in A, not in B), which
    `--fail-on regression` fails on, or `missing` (in A, not in B), which `--fail-on missing` fails on."""

    kind: str
    cell: str
    detail: str

    @property
    def option(self) -> str:
        return "missing" if self.kind == "missing" else "regression"

    def line(self) -> str:
        return f"{self.option}: {self.cell}: {self.detail}"


def _label(row: dict[str, Any]) -> str:
    strategy = row["strategy"] + (f" ({row['setting']})" if row["setting"] else "")
    return f"{row['task']} / {row['backbone']} / {strategy}"


def _ok_in_a_not_in_b(row: dict[str, Any]) -> bool:
    """Every seed ok in A but not in B (one failed, diverged or was skipped), or an ok result in A and none in B."""
    if row["status_a"] == "ok" and row["status_b"] != "ok":
        return True
    return bool(row["n_a"] > 0 and row["n_b"] == 0)


def gate(frame: pd.DataFrame, fail_on: frozenset[str]) -> list[Failure]:
    """The cells of a `compare_runs` frame that fail `--fail-on`, in its row order."""
    found = []
    for row in frame.to_dict("records"):
        if row["verdict"] == "only in A":
            if "missing" in fail_on:
                found.append(Failure("missing", _label(row), "in A, not in B"))
            continue
        if "regression" not in fail_on or row["verdict"] == "only in B":
            continue
        significant = isinstance(row["significant"], bool | np.bool_) and bool(row["significant"])
        if significant and row["verdict"] == "changed" and row["diff"] < 0:
            detail = (
                f"{row['metric']} {number(row['mean_a'])} -> {number(row['mean_b'])} "
                f"({number(row['diff'], signed=True)} [{number(row['diff_ci_low'], signed=True)}, "
                f"{number(row['diff_ci_high'], signed=True)}], Holm-corrected p={row['p_holm']:.2g} < {row['alpha']:g})"
            )
            found.append(Failure("drop", _label(row), detail))
        elif _ok_in_a_not_in_b(row):
            found.append(Failure("not ok", _label(row), f"ok in A, not in B ({row['status_b']})"))
    return found


def untested(frame: pd.DataFrame) -> int:
    """Cells the t-test could not judge: fewer than two ok seeds on a side (but at least one on each)."""
    return int((frame["verdict"] == "too few seeds to test").sum())


def gate_summary(failures: list[Failure], alpha: float) -> str:
    """One line: how many cells fail the gate, and which."""

    def part(kind: str, one: str, many: str) -> str | None:
        cells = [f.cell for f in failures if f.kind == kind]
        return f"{len(cells)} {one if len(cells) == 1 else many}: {', '.join(cells)}" if cells else None

    parts = [
        part("drop", f"regression beyond noise (alpha {alpha:g})", f"regressions beyond noise (alpha {alpha:g})"),
        part("not ok", "cell ok in A and not in B", "cells ok in A and not in B"),
        part("missing", "cell of A missing in B", "cells of A missing in B"),
    ]
    return "; ".join(p for p in parts if p)

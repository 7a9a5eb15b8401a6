"""`bench compare`: which cells changed beyond noise between two results directories.

Both runs go through `build_report` (every swept setting kept), so a cell here is the same
task x backbone x strategy x setting over seeds as in the report, and the test is the report's:
a paired t-test over the seeds both runs have (same seed, same data order and initialisation),
Welch's t-test when their seeds differ, with its interval for the difference. A comparison tests
every cell at once, so the p-values are Holm-corrected over all tested cells: of 720 unchanged
cells, 36 would otherwise pass p < 0.05 by chance and fail a gate.

`--fail-on` turns the comparison into a gate (`gate`): `regression` fails on a row whose metric got
worse (`regressed`), or that was ok in A and is not in B; `missing` fails on a cell of A that B lacks.
A row got worse when B is worse than A by more than `--tolerance` (an amount of the metric, or a
share of A's value) and, with two or more ok seeds on each side, also beyond noise. With fewer
seeds and no tolerance given nothing is gated (a drop of any size, float noise included, would
fail). Worse is lower, or higher for the metrics a task lists in `Task.lower_is_better` (ECE).

A cell is the same cell in A and B when its labels are: task, backbone, strategy, setting and seed,
as `read_planned` matches a cell across the runs of one directory. Its key is not compared: it
hashes every setting, so it changes whenever the suite or a default changes, as between two
harness versions, which is what a comparison is for.
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
from harness.registry import default_registry
from harness.report import ReportOptions, build_report
from harness.stats import ALPHA, holm, metric_bounds, seed_difference
from harness.store import read_planned

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
    recorded = ["lower_is_better"] if "lower_is_better" in frame else []  # the metric's direction, as the cells say
    return frame[[*KEYS, "kind", *columns, "status", *recorded]]


@dataclass(frozen=True)
class Tolerance:
    """How much worse B may be than A before a row regresses: an amount of the metric (`0.01`), or
    with `relative` a share of A's value (`2%`: `value` 0.02)."""

    value: float
    relative: bool = False

    def of(self, reference: float) -> float:
        """The tolerance in the metric's units for a row whose A value is `reference`."""
        return self.value * abs(reference) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}% of A's value" if self.relative else f"{self.value:g}"


TOLERANCE_HINT = "give an amount of the metric (e.g. 0.01) or a percentage of A's value (e.g. 2%)"


def parse_tolerance(text: str | None) -> Tolerance | None:
    """`--tolerance 0.01` (absolute) or `--tolerance 2%` (of A's value); a BenchError says what is wrong."""
    if text is None:
        return None
    given = text.strip()
    relative = given.endswith("%")
    number_text = given.removesuffix("%").strip()
    if not number_text:  # `--tolerance "$TOL"` with an empty variable must not pass as "no tolerance"
        raise BenchError(f"--tolerance: no value given; {TOLERANCE_HINT}")
    try:
        value = float(number_text)
    except ValueError:
        raise BenchError(f"--tolerance: {text!r} is not a number; {TOLERANCE_HINT}") from None
    if not math.isfinite(value):
        raise BenchError(f"--tolerance: {text!r} is not a finite number; {TOLERANCE_HINT}")
    if value < 0:
        raise BenchError(f"--tolerance: {text!r} is negative; {TOLERANCE_HINT}")
    if relative and value > 100:
        raise BenchError(f"--tolerance: {text!r} is more than A's whole value; {TOLERANCE_HINT}")
    return Tolerance(value / 100 if relative else value, relative)


def _check_tolerance(tolerance: Tolerance | None, metrics: Sequence[str]) -> None:
    """An amount as wide as a metric's whole range could never be exceeded: `--tolerance 2` meant for 2%."""
    if tolerance is None or tolerance.relative:
        return
    value = tolerance.value
    for metric in dict.fromkeys(metrics):
        bounds = metric_bounds(metric)
        if bounds is not None and value >= bounds[1] - bounds[0]:
            raise BenchError(
                f"--tolerance: {value:g} is not below the range of {metric} ([{bounds[0]:g}, {bounds[1]:g}]), "
                f"so no drop could exceed it; for {value:g} points of {metric} give {value / 100:g}, "
                f"for {value:g}% of A's value give {value:g}%"
            )


def _direction(row: dict[str, Any], kind: str, metric: str) -> bool:
    """Whether lower is better for this row's metric: as either run's cells record it (the report's
    `lower_is_better`), or where the report has no such record, as the task's plugin says."""
    recorded = [row.get(f"lower_is_better_{s}") for s in "ab"]
    known = [bool(v) for v in recorded if isinstance(v, bool | np.bool_)]
    return any(known) if known else lower_is_better(kind, metric)


def lower_is_better(kind: str, metric: str) -> bool:
    """Whether a lower `metric` is better for tasks of `kind` (`Task.lower_is_better`); False for a
    task kind no installed plugin provides (results from elsewhere)."""
    try:
        task = default_registry().get("task", kind)
    except KeyError:
        return False
    return metric in getattr(task, "lower_is_better", ())


def _identities(path: str | Path) -> dict[tuple[str, ...], dict[int, str]]:
    """Per task x backbone x strategy x setting, the seeds of its cells and their keys (what identifies a cell)."""
    cells: dict[tuple[str, ...], dict[int, str]] = {}
    for result in read_planned(path).results:
        cells.setdefault((result.task, result.backbone, result.strategy, result.setting), {})[result.seed] = result.key
    return cells


def _side(r: dict[str, Any], s: str) -> str:
    """One run's mean and the bounds of its interval (clipped to the metric's range, so maybe asymmetric)."""
    if pd.isna(r[f"n_{s}"]):
        return "-"
    bounds = "" if pd.isna(r[f"ci_low_{s}"]) else f" [{number(r[f'ci_low_{s}'])}, {number(r[f'ci_high_{s}'])}]"
    return f"{number(r[f'mean_{s}'])}{bounds} ({r[f'n_{s}']:.0f})"


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    metric: str | None = None,
    alpha: float = ALPHA,
    tolerance: Tolerance | None = None,
) -> pd.DataFrame:
    """One row per cell of either run: both means, the difference with its interval, p, a verdict,
    whether it regressed (see the module's docstring) and the cells (seeds) of A that B lacks."""
    if not 0 < alpha < 1:
        raise BenchError(f"--alpha: {alpha} is not between 0 and 1")
    a, b = _cells(run_a, metric), _cells(run_b, metric)
    _check_tolerance(tolerance, [*a["metric"], *b["metric"]])
    cells_a, cells_b = _identities(run_a), _identities(run_b)
    both = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True, sort=False)
    rows = [_row(row, cells_a, cells_b, alpha, tolerance) for row in both.to_dict("records")]
    frame = pd.DataFrame(rows).assign(alpha=alpha, tolerance_given=str(tolerance or ""))
    if not len(frame):
        return frame.assign(p_holm=math.nan, regressed=False)
    frame = _holm_verdicts(frame, alpha)
    frame["regressed"] = [_regressed(r, tolerance is not None) for r in frame.to_dict("records")]
    return frame


def _row(
    row: dict[str, Any],
    cells_a: dict[tuple[str, ...], dict[int, str]],
    cells_b: dict[tuple[str, ...], dict[int, str]],
    alpha: float,
    tolerance: Tolerance | None,
) -> dict[str, Any]:
    """One compared group: both sides, the difference and its test, the direction, the seeds B lacks."""
    values_a = row["seed_values_a"] if isinstance(row["seed_values_a"], list) else []
    values_b = row["seed_values_b"] if isinstance(row["seed_values_b"], list) else []
    diff = seed_difference(_by_seed(row, "b"), _by_seed(row, "a"))
    significant = diff.significant(alpha)
    verdict = _verdict(row, diff.diff, significant, bool(values_a and values_b))
    speed_a, speed_b = row["samples_per_second_a"], row["samples_per_second_b"]
    metric_name = row["metric_a"] if isinstance(row["metric_a"], str) else row["metric_b"]
    kind = row["kind_a"] if isinstance(row["kind_a"], str) else row["kind_b"]
    lower = _direction(row, str(kind), str(metric_name))
    group = tuple(str(row[k]) for k in KEYS)
    in_a, in_b = cells_a.get(group, {}), cells_b.get(group, {})
    missing = sorted(seed for seed in in_a if seed not in in_b)
    return {
        **{k: row[k] for k in KEYS},
        "metric": metric_name,
        "lower_is_better": lower,
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
        # how much worse B is than A (negative: better), and how much worse it may be
        "worse_by": diff.diff if lower else -diff.diff,
        "tolerance": tolerance.of(row["mean_a"]) if tolerance is not None else math.nan,
        "missing_seeds": missing,
        "missing_keys": [in_a[seed] for seed in missing],
    }


def beyond(worse_by: float, tolerance: float) -> bool:
    """Worse by more than the tolerance, not merely by float rounding (0.72 - 0.70 is 0.0200000000000000018)."""
    if math.isnan(worse_by):
        return False
    return worse_by > tolerance and not math.isclose(worse_by, tolerance, rel_tol=1e-9, abs_tol=1e-12)


def _regressed(row: dict[str, Any], tolerance_given: bool) -> bool:
    """Worse by more than the tolerance and, where both sides have two or more ok seeds, beyond noise too;
    with fewer seeds only a given tolerance gates (see the module's docstring)."""
    tolerance = 0.0 if math.isnan(row["tolerance"]) else row["tolerance"]
    if row["verdict"] in ("changed", "same within noise", "identical"):
        return bool(row["significant"]) and beyond(row["worse_by"], tolerance)
    return row["verdict"] == "too few seeds to test" and tolerance_given and beyond(row["worse_by"], tolerance)


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


#: the verdicts under which A and B are compared on the same metric (a drop can be measured)
MEASURED = ("changed", "same within noise", "identical", "too few seeds to test")


def _versus(r: dict[str, Any]) -> str:
    """`0.2200 > 0.0100: regressed`: how much worse B is than A against the row's tolerance ("rise" where
    lower is better); beyond it but not beyond noise (two or more seeds a side) is no regression."""
    if r["verdict"] not in MEASURED or math.isnan(r["worse_by"]):
        return "-"
    if not beyond(r["worse_by"], 0.0):
        return "not worse"
    tolerance = 0.0 if math.isnan(r["tolerance"]) else r["tolerance"]
    versus = f"{'rise ' if r['lower_is_better'] else ''}{number(r['worse_by'])}"
    if not beyond(r["worse_by"], tolerance):
        return f"{versus} <= {number(tolerance)}"
    return f"{versus} > {number(tolerance)}: {'regressed' if r['regressed'] else 'within noise'}"


def render_comparison(frame: pd.DataFrame, format: str) -> str:
    if format == "csv":
        return frame.to_csv(index=False)
    if format == "json":
        return json.dumps(json.loads(frame.to_json(orient="records")), indent=2) + "\n"
    given = str(frame["tolerance_given"].iloc[0]) if len(frame) else ""
    header = ["task", "backbone", "strategy", "metric", "A (95% CI, n)", "B (95% CI, n)", "B - A (95% CI)", "p (Holm)",
              "verdict", "speed B/A"]  # fmt: skip
    if given:
        header.insert(-1, "worse by vs tolerance")
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
        if given:
            cells.insert(-1, _versus(r))
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
    if given:
        regressed = int(frame["regressed"].sum())
        footer += (
            f" Tolerance {given}: {regressed} of {len(frame)} cells regressed, i.e. B is worse than A by more than it "
            "(worse by vs tolerance: a drop, or a rise for a lower-is-better metric) and, where both sides have two "
            "or more ok seeds, changed beyond noise too."
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
    """A row or cell that fails the gate. `kind`: `drop` (worse beyond noise and the tolerance),
    `untested drop` (worse beyond the tolerance, too few seeds to test) or `not ok` (ok in A, not in B),
    which `--fail-on regression` fails on, or `missing` (a cell of A, `seed`, not in B), which
    `--fail-on missing` fails on."""

    kind: str
    cell: str
    detail: str
    seed: int | None = None

    @property
    def option(self) -> str:
        return "missing" if self.kind == "missing" else "regression"

    @property
    def name(self) -> str:
        return self.cell if self.seed is None else f"{self.cell} / seed {self.seed}"

    def line(self) -> str:
        return f"{self.option}: {self.name}: {self.detail}"


def _label(row: dict[str, Any]) -> str:
    strategy = row["strategy"] + (f" ({row['setting']})" if row["setting"] else "")
    return f"{row['task']} / {row['backbone']} / {strategy}"


def _ok_in_a_not_in_b(row: dict[str, Any]) -> bool:
    """Every seed ok in A but not in B (one failed, diverged or was skipped), or an ok result in A and none in B."""
    if row["status_a"] == "ok" and row["status_b"] != "ok":
        return True
    return bool(row["n_a"] > 0 and row["n_b"] == 0)


def _worse_vs_tolerance(row: dict[str, Any]) -> str:
    """`drop 0.1000 > tolerance 0.0144 (2% of A's value)`."""
    word = "rise" if row["lower_is_better"] else "drop"
    tolerance = 0.0 if math.isnan(row["tolerance"]) else row["tolerance"]
    given = row["tolerance_given"]
    of = f" ({given})" if given.endswith("of A's value") else ""
    return f"{word} {number(row['worse_by'])} > tolerance {number(tolerance) if given else '0 (none given)'}{of}"


def gate(frame: pd.DataFrame, fail_on: frozenset[str]) -> list[Failure]:
    """The rows of a `compare_runs` frame that fail `--fail-on`, in its row order, and for `missing`
    each cell (seed) of A that B lacks."""
    found = []
    for row in frame.to_dict("records"):
        if "missing" in fail_on:
            for seed, key in zip(row["missing_seeds"], row["missing_keys"], strict=True):
                found.append(Failure("missing", _label(row), f"in A (cell {key}), not in B", seed))
        if "regression" not in fail_on or row["verdict"] in ("only in A", "only in B"):
            continue
        means = f"{number(row['mean_a'])} -> {number(row['mean_b'])}"
        change = f"{row['metric']} {means} ({number(row['diff'], signed=True)}"
        if row["regressed"] and row["verdict"] == "too few seeds to test":
            seeds = f"{row['n_a']:.0f} vs {row['n_b']:.0f} ok seeds"
            detail = f"{change}; {seeds}, too few to test; {_worse_vs_tolerance(row)})"
            found.append(Failure("untested drop", _label(row), detail))
        elif row["regressed"]:
            detail = (
                f"{change} [{number(row['diff_ci_low'], signed=True)}, {number(row['diff_ci_high'], signed=True)}], "
                f"Holm-corrected p={row['p_holm']:.2g} < {row['alpha']:g}; {_worse_vs_tolerance(row)})"
            )
            found.append(Failure("drop", _label(row), detail))
        elif _ok_in_a_not_in_b(row):
            found.append(Failure("not ok", _label(row), f"ok in A, not in B ({row['status_b']})"))
    return found


def untested(frame: pd.DataFrame) -> int:
    """Cells the t-test could not judge: fewer than two ok seeds on a side (but at least one on each)."""
    return int((frame["verdict"] == "too few seeds to test").sum())


def gate_summary(failures: list[Failure], alpha: float, tolerance: Tolerance | None = None) -> str:
    """One line: how many rows and cells fail the gate, and which."""

    def part(kind: str, one: str, many: str) -> str | None:
        chosen = [f for f in failures if f.kind == kind]
        names = _missing_names(chosen) if kind == "missing" else [f.cell for f in chosen]
        return f"{len(chosen)} {one if len(chosen) == 1 else many}: {', '.join(names)}" if chosen else None

    beyond_noise = f"beyond noise (alpha {alpha:g})" + (f" and tolerance {tolerance}" if tolerance else "")
    beyond_tolerance = f"beyond tolerance {tolerance} (too few seeds to test)"
    parts = [
        part("drop", f"regression {beyond_noise}", f"regressions {beyond_noise}"),
        part("untested drop", f"regression {beyond_tolerance}", f"regressions {beyond_tolerance}"),
        part("not ok", "cell ok in A and not in B", "cells ok in A and not in B"),
        part("missing", "cell of A missing in B", "cells of A missing in B"),
    ]
    return "; ".join(p for p in parts if p)


def _missing_names(failures: list[Failure]) -> list[str]:
    """`cls / r18 / lora (seeds 0, 1)`: the missing cells grouped by row, in order."""
    seeds: dict[str, list[str]] = {}
    for failure in failures:
        seeds.setdefault(failure.cell, []).append(str(failure.seed))
    return [f"{cell} (seed{'s' if len(s) > 1 else ''} {', '.join(s)})" for cell, s in seeds.items()]

"""The report: per task, each backbone x strategy over seeds, its gain over the baseline, its cost, its ROI.

Everything is computed here with pandas and `harness.stats` on `load_results`' frame;
reporters only format it, so every format shows the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.errors import BenchError
from harness.formatting import significant_figures
from harness.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    bootstrap_interval,
    holm,
    mean_interval,
    metric_bounds,
    pareto_optimal,
    seed_difference,
)
from harness.store import read_planned, results_frame
from harness.timing import LOAD_LIMIT, LOADER_BOUND_FRACTION, SPREAD_LIMIT, WARMUP_STEPS, SeedTiming, judge_timing
from harness.tuning import roi_with_tuning, tuning_frame, tuning_notes, with_tuning

SortOrder = Literal["plan", "metric", "gain", "roi", "cost"]
SORT_ORDERS: tuple[str, ...] = ("plan", "metric", "gain", "roi", "cost")
#: JSON reports carry this, so readers can tell a changed layout from a changed number
REPORT_SCHEMA = "bench.report/2"


def definitions(alpha: float = ALPHA, confidence: float = CONFIDENCE) -> list[tuple[str, str]]:
    """What every column means; printed under every human-readable report and in docs/report.md."""
    level = f"{confidence:.0%}"
    return [
        ("metric", f"mean over seeds of the test-split metric and its {level} confidence interval [low, high]; "
         "n = seeds with status ok. Where the cells stored a score per test image (top-k accuracy), a percentile "
         f"bootstrap over the test images and the seeds together ({BOOTSTRAP_RESAMPLES} resamples, each drawing "
         "seeds and images with replacement), which holds the test set's sampling error too; otherwise Student's "
         "t over seeds (mean ± t with n-1 degrees of freedom x sample standard deviation / √n), seed-to-seed "
         "spread only. Clipped to [0, 1] for accuracies, mAP, mAR, mIoU, F1, AUROC and ECE; a note under each table "
         "says which"),
        ("gain", "mean minus the mean of the baseline strategy on the same task and backbone, with the "
         f"{level} interval of its test: a paired t-test over the seeds when both rows have the same seeds, "
         "Welch's t-test otherwise (a note under each table says which). For a metric where lower is better "
         "(ece) the baseline's mean minus the row's, so a positive gain is better; ranks, the trivial comparison "
         "and the Pareto marks then favour lower values too"),
        ("significant", f"the gain's two-sided p-value, Holm-corrected over all gains of the table, is below "
         f"{alpha:g} (yes / no, with the corrected p; - when a side has fewer than two seeds)"),
        ("device-hours", f"mean training time of one cell on one device ± the half-width of its {level} interval "
         "over seeds: compute plus data wait, validation and one-off compilation excluded; the ROI divides by it. "
         f"†: the timing is doubtful, because the seeds' time per step differs more than {SPREAD_LIMIT:g}x or the "
         f"machine's load average exceeded {LOAD_LIMIT:g}x the cell's cores (another process shared it)"),
        ("samples/s", "training samples per second of compute: data wait excluded, and the first "
         f"{WARMUP_STEPS} steps (a quarter of a shorter run: allocator, kernel selection, compilation); "
         f"loader-bound: waiting for batches took over {LOADER_BOUND_FRACTION:.0%} of the training time"),
        ("peak memory", "the cell's own peak: CUDA max allocated since the cell started on a GPU; on the CPU the "
         "highest resident size above the cell's starting one, sampled every 2 ms"),
        ("trainable", "parameters the strategy trains, and their share of the task model's parameters"),
        ("FLOPs/sample", "forward and backward FLOPs of one training sample, where counted"),
        ("ROI", "gain per device-hour of training (a row built on other cells' trained models, a distillation "
         "teacher or soup ingredients, adds their device-hours: a note names it), and gain per million trainable "
         "parameters"),
        ("Pareto", "★: no other row of the task on the same device trains in fewer device-hours (those of the "
         "cells it is built on included) and scores at least as high (or as fast and higher)"),
        ("not above trivial", "the row's lower confidence bound (its mean when n = 1) is not above the score of "
         "the task's trivial predictor on the same test split (classification: the majority class, top-k the k "
         "most frequent; segmentation: the most frequent class at every pixel; detection: no detections, 0). "
         "Such a row has no ROI and no Pareto mark and is not ranked in the summary"),
        ("summary", "per task kind, a strategy's mean rank among the strategies of each task x backbone "
         "(1 = best mean metric, ties averaged) and its mean gain"),
        ("undefined metrics", "a seed whose metric is undefined on its data (detection without ground truth, or "
         "none of that size for map_small / map_medium / map_large) is left out of n, the mean and the interval; "
         "- when no seed has it"),
        ("detection", "COCOeval's metrics (map: IoU .50:.95, 101-point recall); COCO crowd regions and VOC "
         "`difficult` objects are COCOeval ignore regions, so a detection mostly inside one is ignored: not the "
         "VOC devkit's rule. map_voc07 / map_voc12 (metric_protocol) are the devkit's AP at IoU 0.5. Boxes are "
         "clamped to the image; only training drops those left without area (counted in each cell's data)"),
    ]  # fmt: skip


@dataclass(frozen=True)
class ReportOptions:
    """What to report and how; each field is a `bench report` option."""

    metric: str | None = None
    baseline: str | None = None
    tasks: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    strategies: tuple[str, ...] = ()
    sort: str = "plan"
    alpha: float = ALPHA
    all_settings: bool = False


@dataclass
class TaskTable:
    task: str
    kind: str
    metric: str
    baseline: str | None
    rows: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    #: the trivial predictor's test score on `metric` (None: not recorded) and what it predicts
    trivial: float | None = None
    trivial_predictor: str = ""
    #: whether lower values of `metric` are better (ece): the rows are ranked, compared and marked so
    lower_is_better: bool = False


@dataclass
class Report:
    source: str
    tables: list[TaskTable]
    summary: pd.DataFrame
    alpha: float = ALPHA
    confidence: float = CONFIDENCE
    #: files of the results directory left out because they cannot be read: `path: why`
    skipped: list[str] = field(default_factory=list)

    @property
    def definitions(self) -> list[tuple[str, str]]:
        return definitions(self.alpha, self.confidence)

    def to_frame(self) -> pd.DataFrame:
        """All tables in one frame with `task`, `kind`, `metric` and `baseline` columns (CSV, JSON), and
        `lower_is_better` (whether the table's metric is better lower) last."""
        frames = [
            t.rows.assign(task=t.task, kind=t.kind, metric=t.metric, baseline=t.baseline).assign(
                lower_is_better=t.lower_is_better
            )
            for t in self.tables
        ]
        if not frames:
            return pd.DataFrame()
        frame = pd.concat(frames, ignore_index=True)
        first = ["task", "kind", "metric", "baseline"]
        return frame[first + [c for c in frame.columns if c not in first]]


def _choose(frame: pd.DataFrame, column: str, chosen: tuple[str, ...], option: str) -> pd.DataFrame:
    if not chosen:
        return frame
    allowed = list(dict.fromkeys(frame[column].astype(str)))
    for name in chosen:
        if name not in allowed:
            raise BenchError(f"{option}: unknown {column} {name!r}; allowed: {', '.join(allowed)}")
    return frame[frame[column].isin(chosen)]


def build_report(path: str | Path, options: ReportOptions | None = None, **given: Any) -> Report:
    """Read a results directory and compute every table of the report.

    A strategy swept over several settings is shown at the one with the best validation score
    (or at every setting, with `all_settings`); the test split never takes part in the choice.
    """
    options = options or ReportOptions(**given)
    planned = read_planned(path)
    skipped = [str(problem) for problem in planned.skipped]
    frame = results_frame(planned.results)
    if frame.empty:
        more = f" ({len(skipped)} unreadable files skipped: {'; '.join(skipped)})" if skipped else ""
        raise BenchError(f"{path}: no results yet{more}")
    if options.sort not in SORT_ORDERS:
        raise BenchError(f"--sort: unknown order {options.sort!r}; allowed: {', '.join(SORT_ORDERS)}")
    if not 0 < options.alpha < 1:
        raise BenchError(f"--alpha: {options.alpha} is not between 0 and 1")
    baseline = options.baseline
    if baseline is None:
        baseline = planned.manifest.get("settings", {}).get("baseline")
    elif baseline not in set(frame["strategy"]):
        allowed = ", ".join(dict.fromkeys(frame["strategy"]))
        raise BenchError(f"--baseline: unknown strategy {baseline!r}; allowed: {allowed}")
    reported = [c.removeprefix("metric.") for c in frame.columns if c.startswith("metric.")]
    if options.metric is not None and options.metric not in reported:
        raise BenchError(f"--metric: no task reports {options.metric!r}; allowed: {', '.join(reported)}")
    frame = _choose(frame, "task", options.tasks, "--task")
    frame = _choose(frame, "backbone", options.backbones, "--backbone")
    _choose(frame, "strategy", options.strategies, "--strategy")  # validated here, applied after the gains
    tuning = tuning_frame(path)
    tables = [
        _task_table(str(task), rows, baseline, options, tuning[tuning["task"] == task])
        for task, rows in frame.groupby("task", sort=False)
    ]
    return Report(str(path), tables, summarise(tables), options.alpha, skipped=skipped)


def _select_settings(table: pd.DataFrame, lower: bool = False) -> pd.DataFrame:
    """Mark, per backbone x strategy, the setting with the best mean validation score (lowest if `lower`)."""
    table = table.assign(selected=False)
    for _, part in table.groupby(["backbone", "strategy"], sort=False):
        scored = part["val_mean"].dropna()
        best = (scored.idxmin() if lower else scored.idxmax()) if len(scored) else part.index[0]
        table.loc[best, "selected"] = True
    return table


def _status_text(statuses: pd.Series, reasons: pd.Series) -> str:
    counts = statuses.value_counts()
    if list(counts.index) == ["ok"]:
        return "ok"
    parts = [f"{n} {status}" for status, n in counts.items()]
    reason = next((r for s, r in zip(statuses, reasons, strict=True) if s != "ok" and r), None)
    return ", ".join(parts) + (f": {reason}" if reason else "")


def _mean(series: pd.Series) -> float:
    values = pd.to_numeric(series, errors="coerce")
    return float(values.mean()) if values.notna().any() else math.nan


def _per_image_scores(good: pd.DataFrame, metric: str) -> list[list[float]] | None:
    """The seeds x images table of `metric`'s per-image scores, when every seed with the metric stored
    them for the same number of images and their mean is the metric; None otherwise (older cells,
    metrics that are no mean over images such as mIoU, or a seed that saw other images)."""
    column = f"per_image.{metric}"
    if column not in good or not len(good):
        return None
    rows = []
    for scores, value in zip(good[column], good[f"metric.{metric}"], strict=True):
        if pd.isna(value):
            continue
        if not isinstance(scores, list) or not scores:
            return None
        if not math.isclose(sum(scores) / len(scores), float(value), abs_tol=1e-6):
            return None
        rows.append(scores)
    return rows if rows and len({len(r) for r in rows}) == 1 else None


def _group_row(group: pd.DataFrame, column: str, val_column: str) -> dict[str, Any]:
    """One backbone x strategy x setting over its seeds: the metric's interval and the costs."""
    good = group[group["status"] == "ok"]
    values = [float(v) for v in good[column] if pd.notna(v)]
    metric = column.removeprefix("metric.")
    scores = _per_image_scores(good, metric)
    if scores is not None:
        interval, method = bootstrap_interval(scores, bounds=metric_bounds(metric)), "bootstrap"
    else:
        interval, method = mean_interval(values, bounds=metric_bounds(metric)), "t"
    seeds = [int(s) for s, v in zip(good["seed"], good[column], strict=True) if pd.notna(v)]
    trainable = float(good["cost.trainable_params"].max()) if len(good) else math.nan
    total = float(good["cost.total_params"].max()) if len(good) else math.nan
    train_seconds = _mean(good["cost.train_seconds"])
    hours = mean_interval([float(v) / 3600 for v in pd.to_numeric(good["cost.train_seconds"]).dropna()])
    timing = judge_timing(_seed_timings(good))
    devices = sorted({str(d) for d in good["cost.device_name"].dropna() if d})
    return {
        "n": interval.n,
        "mean": interval.mean,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "ci_half_width": interval.half_width,
        "ci_method": method,
        "std": float(pd.Series(values).std(ddof=1)) if len(values) > 1 else math.nan,
        "seed_values": values,
        "seeds": seeds,
        "val_mean": _mean(good[val_column]),
        "train_seconds": train_seconds,
        "train_device_hours": train_seconds / 3600,
        "upstream_device_hours": float(pd.to_numeric(_column(good, "cost.upstream_seconds")).fillna(0).mean()) / 3600
        if len(good)
        else 0.0,
        "train_device_hours_ci_half_width": hours.half_width,
        "samples_per_second": _mean(good["cost.samples_per_second"]),
        "data_wait_fraction": timing.data_wait_fraction,
        "loader_bound": timing.loader_bound,
        "compile_seconds": _mean(_column(good, "cost.compile_seconds")),
        "timing_disturbed": timing.disturbed,
        "timing_doubt": "; ".join(timing.doubts),
        "peak_memory_mib": float(pd.to_numeric(good["cost.peak_memory_bytes"]).max()) / 2**20
        if len(good)
        else math.nan,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100 * trainable / total if total else math.nan,
        "flops_per_sample": _mean(good["cost.flops_per_sample"]),
        "device": devices[0] if len(devices) == 1 else ("mixed: " + "; ".join(devices) if devices else ""),
        "status": _status_text(group["status"], group["reason"]),
    }


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A cost column, empty where the results predate it."""
    return frame[name] if name in frame else pd.Series(math.nan, index=frame.index)


def _seed_timings(good: pd.DataFrame) -> list[SeedTiming]:
    def number(value: Any) -> float | None:
        return None if value is None or pd.isna(value) else float(value)

    timings = []
    for row in good.to_dict("records"):
        loads = [v for v in (number(row.get("cost.load_start")), number(row.get("cost.load_end"))) if v is not None]
        timings.append(
            SeedTiming(
                train_seconds=number(row.get("cost.train_seconds")) or 0.0,
                steps=int(number(row.get("cost.train_steps")) or 0),
                data_wait_seconds=number(row.get("cost.data_wait_seconds")) or 0.0,
                load=max(loads) if loads else None,
                cores=int(number(row.get("cost.cores")) or 0),
            )
        )
    return timings


def _upstream_notes(table: pd.DataFrame) -> list[str]:
    """Name the rows whose ROI counts other cells' training (teachers, soups' ingredients), and how much."""
    built = table[table["upstream_device_hours"] > 0]
    if built.empty:
        return []
    rows = ", ".join(
        f"{r.backbone} / {r.strategy} (+{significant_figures(r.upstream_device_hours)} h)" for r in built.itertuples()
    )
    return [
        f"built on other cells' trained models (teachers, soup ingredients): {rows}; their ROI divides the gain by "
        "their own device-hours plus those cells', what adopting the strategy costs"
    ]


def _task_table(
    task: str, rows: pd.DataFrame, baseline: str | None, options: ReportOptions, tuning: pd.DataFrame
) -> TaskTable:
    kind = str(rows["task_kind"].iloc[0])
    metric = options.metric
    if metric is None or rows.get(f"metric.{metric}", pd.Series(dtype=float)).isna().all():
        metric = str(rows["metric"].iloc[0])  # the suite's metric for tasks that do not report the one asked for
    notes = []
    metric, refused = _discriminating(rows, metric)
    notes.extend(refused)
    lower = _lower_is_better(rows, metric)
    if lower:
        notes.append(
            f"{metric}: lower is better; gains are the baseline's mean minus the row's (positive: better), and "
            "ranks, the trivial comparison and the Pareto marks favour lower values"
        )
    column, val_column = f"metric.{metric}", f"val.{metric}"
    trivial, predictor = _trivial(rows, metric)
    for name in (column, val_column):
        if name not in rows:
            rows = rows.assign(**{name: math.nan})
    if "setting" not in rows:
        rows = rows.assign(setting="")
    groups = [
        {"backbone": backbone, "strategy": strategy, "setting": setting, **_group_row(group, column, val_column)}
        for (backbone, strategy, setting), group in rows.groupby(["backbone", "strategy", "setting"], sort=False)
    ]
    table = _select_settings(pd.DataFrame(groups), lower)
    if (table.groupby(["backbone", "strategy"], sort=False).size() > 1).any():
        notes.append(
            f"strategies with several settings are shown at the setting with the best validation {metric} "
            "(final epoch, mean over seeds); the test split plays no part in the choice"
        )
    if not options.all_settings:
        table = table[table["selected"]].reset_index(drop=True)
    notes.extend(_interval_notes(table))
    notes.extend(_gains(table, baseline, options.alpha, lower))
    # a row built on other cells' models (a teacher, a soup's ingredients) costs theirs too
    table["roi_per_device_hour"] = table["gain"] / (table["train_device_hours"] + table["upstream_device_hours"])
    table = with_tuning(table, tuning)
    table["roi_with_tuning"] = roi_with_tuning(table)
    notes.extend(tuning_notes(table))
    trained = table["trainable_params"].where(table["trainable_params"] > 0)  # none trained: no ROI per parameter
    table["roi_per_million_params"] = table["gain"] / (trained / 1e6)
    notes.extend(_upstream_notes(table))
    _mark_trivial(table, trivial, lower)
    if options.strategies:
        table = table[table["strategy"].isin(options.strategies)].reset_index(drop=True)
    notes.extend(_mark_pareto(table, lower))
    notes.extend(_trivial_notes(table, metric, trivial, predictor))
    notes.extend(_timing_notes(table))
    table = _sorted(table, options.sort, lower)
    return TaskTable(task, kind, metric, baseline, table, notes, trivial, predictor, lower)


def _lower_is_better(rows: pd.DataFrame, metric: str) -> bool:
    """Whether the cells record `metric` as one where lower is better (`CellResult.lower_is_better`)."""
    recorded = rows["lower_is_better"] if "lower_is_better" in rows else pd.Series(dtype=object)
    return any(isinstance(names, list) and metric in names for names in recorded)


def _ok_values(rows: pd.DataFrame, column: str) -> list[float]:
    if column not in rows:
        return []
    return [float(v) for v in pd.to_numeric(rows.loc[rows["status"] == "ok", column], errors="coerce").dropna()]


def _constant(rows: pd.DataFrame, metric: str) -> float | None:
    """The one value every ok seed of every row scores on `metric`, where there are at least two rows and it
    is the trivial predictor's too (where recorded): such a metric cannot rank anything. None otherwise."""
    values = _ok_values(rows, f"metric.{metric}")
    scored = rows[rows["status"] == "ok"].dropna(subset=[f"metric.{metric}"]) if values else rows.iloc[:0]
    if len(scored.groupby(["backbone", "strategy", "setting"] if "setting" in rows else ["backbone", "strategy"])) < 2:
        return None
    trivial = _ok_values(rows, f"trivial.{metric}")
    if len(set(values + trivial)) != 1:
        return None
    return values[0]


def _discriminating(rows: pd.DataFrame, metric: str) -> tuple[str, list[str]]:
    """The ranking metric, or, where it cannot discriminate (top-5 of five classes), another the task
    reports that can, with a line saying so."""
    value = _constant(rows, metric)
    if value is None:
        return metric, []
    others = [c.removeprefix("metric.") for c in rows.columns if c.startswith("metric.") and c != f"metric.{metric}"]
    usable = [m for m in others if _ok_values(rows, f"metric.{m}") and _constant(rows, m) is None]
    why = f"{metric} cannot discriminate: every seed of every row scores {value:.4f}"
    if not usable:
        return metric, [f"{why}; the task reports no other metric to rank by"]
    return usable[0], [f"{why}; left out and ranked by {usable[0]} instead"]


def _trivial(rows: pd.DataFrame, metric: str) -> tuple[float | None, str]:
    """The trivial predictor's test score on `metric`: one value per test split, so the median over the ok cells."""
    values = _ok_values(rows, f"trivial.{metric}")
    if not values:
        return None, ""
    predictors = [str(p) for p in rows.get("trivial_predictor", pd.Series(dtype=str)).dropna() if p]
    return float(pd.Series(values).median()), (predictors[0] if predictors else "")


def _mark_trivial(table: pd.DataFrame, trivial: float | None, lower: bool = False) -> None:
    """`above_trivial`: the lower confidence bound (the mean with one seed) is above the trivial score (with
    `lower`: the upper bound is below it); None without a trivial score or a seed. Rows not above it lose their ROI."""
    table["above_trivial"] = None
    if trivial is None:
        return
    for index, row in table.iterrows():
        if not row["n"] or pd.isna(row["mean"]):
            continue
        bound = row["mean"] if row["n"] == 1 or pd.isna(row["ci_low"]) else row["ci_high" if lower else "ci_low"]
        # a float sum's rounding is not a gain
        table.at[index, "above_trivial"] = bool(bound < trivial - 1e-9 if lower else bound > trivial + 1e-9)
    below = table["above_trivial"].map(lambda v: v is False)
    table.loc[below, ["roi_per_device_hour", "roi_with_tuning", "roi_per_million_params"]] = math.nan


def ranked_rows(table: pd.DataFrame) -> pd.Series:
    """The rows that may be ranked, marked Pareto-optimal or given an ROI: scored, and not below trivial."""
    above = table["above_trivial"] if "above_trivial" in table else pd.Series(None, index=table.index)
    return (table["n"] > 0) & above.map(lambda v: v is not False)


def _row_name(row: Mapping[str, Any]) -> str:
    """A table row as a note names it: backbone / strategy (setting)."""
    return f"{row['backbone']} / {row['strategy']}" + (f" ({row['setting']})" if row["setting"] else "")


def _trivial_notes(table: pd.DataFrame, metric: str, trivial: float | None, predictor: str) -> list[str]:
    if trivial is None:
        return []
    notes = [f"trivial predictor ({predictor or 'trivial'}): {metric} {trivial:.4f}"]
    below = [r for r in table.to_dict("records") if r["above_trivial"] is False]
    if below and len(below) == sum(1 for r in table.to_dict("records") if r["above_trivial"] is not None):
        notes.append(f"no strategy beats the trivial predictor on {metric}: nothing in this table is ranked")
    elif below:
        names = ", ".join(_row_name(r) for r in below)
        notes.append(f"not above trivial (not ranked, no ROI, no Pareto mark): {names}")
    return notes


def _timing_notes(table: pd.DataFrame) -> list[str]:
    """Say which rows' costs are doubtful or loader-bound, and why: the ROI column depends on them."""
    notes = []
    for row in table.to_dict("records"):
        name = _row_name(row)
        if row["timing_disturbed"]:
            notes.append(f"† {name}: timing doubtful ({row['timing_doubt']}); rerun its seeds on a quiet machine")
        if row["loader_bound"]:
            notes.append(
                f"{name}: loader-bound, {row['data_wait_fraction']:.0%} of training spent waiting for batches "
                "(more num_workers, or data on a faster disk); its device-hours include that wait"
            )
    return notes


def _gains(table: pd.DataFrame, baseline: str | None, alpha: float, lower: bool = False) -> list[str]:
    """Fill gain, its interval, its p-value and significance against each backbone's baseline row
    (with `lower`, a lower-is-better metric: the baseline's minus the row's, so a positive gain is better).

    A row with the baseline's seeds is tested paired over them, any other with Welch's test
    (`gain_test` says which); `p_holm` is Holm's correction over every gain of the table, and
    `significant` compares it with alpha.
    """
    for name in ("gain", "gain_ci_low", "gain_ci_high", "p_value", "p_holm"):
        table[name] = math.nan
    table["significant"] = None
    table["gain_test"] = ""
    if baseline is None:
        return ["no baseline strategy set: gains and ROI are not computed (`--baseline STRATEGY` sets one)"]
    notes = []
    for backbone, part in table.groupby("backbone", sort=False):
        base = part[(part["strategy"] == baseline) & part["selected"]]
        if base.empty or not base["n"].iloc[0]:
            notes.append(f"no ok {baseline!r} result for backbone {backbone}: its gains are not computed")
            continue
        reference = dict(zip(base["seeds"].iloc[0], base["seed_values"].iloc[0], strict=True))
        for index in part.index:
            if index == base.index[0]:
                table.loc[index, "gain"] = 0.0
                continue
            values = dict(zip(table.at[index, "seeds"], table.at[index, "seed_values"], strict=True))
            diff = seed_difference(reference, values) if lower else seed_difference(values, reference)
            table.loc[index, ["gain", "gain_ci_low", "gain_ci_high", "p_value"]] = [
                diff.diff, diff.low, diff.high, diff.p_value,
            ]  # fmt: skip
            if not math.isnan(diff.p_value):
                table.at[index, "gain_test"] = f"paired t over {diff.n} seeds" if diff.test == "paired" else "Welch"
    tested = table["p_value"].notna()
    table.loc[tested, "p_holm"] = holm(list(table.loc[tested, "p_value"]))
    for index in table.index[tested]:
        table.at[index, "significant"] = bool(table.at[index, "p_holm"] < alpha)
    if tested.any():
        notes.append(_tests_note(table.loc[tested, "gain_test"], alpha))
    return notes


def _interval_notes(table: pd.DataFrame) -> list[str]:
    """Which rows' intervals are a bootstrap over test images and seeds, when some are."""
    methods = table.get("ci_method", pd.Series(dtype=str))
    boot = table[methods == "bootstrap"]
    if boot.empty:
        return []
    which = "all rows" if len(boot) == len(table) else ", ".join(_row_name(row) for _, row in boot.iterrows())
    rest = "" if len(boot) == len(table) else "; the others: Student-t over seeds"
    return [f"intervals of {which}: bootstrap over the test images and seeds together{rest}"]


def _tests_note(tests: pd.Series, alpha: float) -> str:
    """Which test each gain of the table used, and that their p-values are Holm-corrected together."""

    def gains(n: int) -> str:
        return f"{n} {'gain' if n == 1 else 'gains'}"

    used = "; ".join(
        f"a paired t-test over {test.removeprefix('paired t over ').removesuffix(' seeds')} shared seeds ({gains(n)})"
        if test.startswith("paired")
        else f"Welch's t-test ({gains(n)}: seeds not the baseline's)"
        for test, n in tests.value_counts().items()
    )
    return (
        f"gains tested with {used}; p-values Holm-corrected over the table's {gains(len(tests))} tested, "
        f"significant when the corrected p < {alpha:g}"
    )


def _mark_pareto(table: pd.DataFrame, lower: bool = False) -> list[str]:
    """Pareto flags per device: device-hours measured on different devices are not one axis."""
    table["pareto"] = False
    devices = [d for d in dict.fromkeys(table["device"]) if d]
    for device in devices:
        part = table[(table["device"] == device) & ranked_rows(table)]  # not above trivial: never marked
        hours = part["train_device_hours"] + part["upstream_device_hours"]  # what the row's recipe costs in all
        flags = pareto_optimal(list(hours), list(-part["mean"] if lower else part["mean"]))
        table.loc[part.index, "pareto"] = flags
    if len(devices) > 1:
        return [
            f"costs were measured on {len(devices)} devices ({' | '.join(devices)}): device-hours, samples/s, "
            "memory and ROI compare only between rows of the same device, and the Pareto marks are per device"
        ]
    return [f"costs measured on {devices[0]}"] if devices else []


def _sorted(table: pd.DataFrame, order: str, lower: bool = False) -> pd.DataFrame:
    column, ascending = {
        "plan": (None, True),
        "metric": ("mean", lower),
        "gain": ("gain", False),
        "roi": ("roi_per_device_hour", False),
        "cost": ("train_device_hours", True),
    }[order]
    if column is None:
        return table
    return table.sort_values(column, ascending=ascending, na_position="last", kind="stable").reset_index(drop=True)


def summarise(tables: list[TaskTable]) -> pd.DataFrame:
    """Per strategy and task kind: mean rank among the strategies of each task x backbone, and mean gain."""
    ranked = []
    for table in tables:
        for _, part in table.rows.groupby("backbone", sort=False):
            scored = part[ranked_rows(part)]
            if len(scored) < 2:
                continue
            ranks = scored["mean"].rank(ascending=table.lower_is_better, method="average")
            for index, rank in ranks.items():
                ranked.append(
                    {
                        "strategy": scored.loc[index, "strategy"],
                        "kind": table.kind,
                        "task": table.task,
                        "rank": float(rank),
                        "of": len(scored),
                        "gain": scored.loc[index, "gain"],
                        "significant": scored.loc[index, "significant"] is True,
                    }
                )
    columns = ["strategy", "kind", "mean_rank", "mean_gain", "groups", "significant_gains", "tasks"]
    if not ranked:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(ranked)
    summary = (
        frame.groupby(["strategy", "kind"], sort=False)
        .agg(
            mean_rank=("rank", "mean"),
            mean_gain=("gain", "mean"),
            groups=("rank", "size"),
            significant_gains=("significant", "sum"),
            tasks=("task", lambda t: ", ".join(dict.fromkeys(t))),
        )
        .reset_index()
    )
    summary["significant_gains"] = summary["significant_gains"].astype(int)
    return summary.sort_values(["kind", "mean_rank"], kind="stable").reset_index(drop=True)[columns]

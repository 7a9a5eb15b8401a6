"""The report's tables as rows of display strings, shared by the markdown, HTML and LaTeX reporters.

One place decides the columns, their headers and how each number is written, so the three
human-readable formats always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness import Report, TaskTable, count, missing, number, significant_figures

PARETO_MARK = "★"
#: after the metric of a row whose score does not beat the task's trivial predictor (docs/report.md)
NOT_ABOVE_TRIVIAL = "(not above trivial)"


def _significance(row: dict[str, Any], baseline: str | None) -> str:
    if row["strategy"] == baseline and row["gain"] == 0:
        return "baseline"
    p = row.get("p_holm", row["p_value"])  # Holm-corrected within the table
    if row["significant"] is None or missing(p):
        return "-"
    return f"{'yes' if row['significant'] else 'no'} (p={p:.2g})"


DISTURBED_MARK = "†"


def _device_hours(row: dict[str, Any]) -> str:
    """Mean device-hours ± the interval's half-width over seeds, † when the timing is doubtful."""
    text = significant_figures(row["train_device_hours"])
    half = row.get("train_device_hours_ci_half_width")
    if half is not None and not missing(half):
        noise = half < 1e-9 * abs(row["train_device_hours"])  # equal seeds: the float sum's rounding, not spread
        text += f" ± {0 if noise else significant_figures(half)}"
    return text + (f" {DISTURBED_MARK}" if row.get("timing_disturbed") else "")


def _trials(row: dict[str, Any]) -> str:
    """`6`, `6 (1 pruned)`; `-` for a strategy that was not searched."""
    if not row.get("trials"):
        return "-"
    extra = [f"{int(row[k])} {k}" for k in ("pruned", "failed") if row.get(k)]
    return f"{int(row['trials'])}" + (f" ({', '.join(extra)})" if extra else "")


def _tuned(table: TaskTable) -> bool:
    return "trials" in table.rows and bool((table.rows["trials"] > 0).any())


TUNING_HEADER = ["trials", "tuning device-h", "best val (search)", "importance", "gain/device-h incl. tuning"]


def _tuning_cells(row: dict[str, Any]) -> list[str]:
    searched = bool(row.get("trials"))
    return [
        _trials(row),
        significant_figures(row["tuning_device_hours"]) if searched else "-",
        number(row["best_val_search"]) if searched else "-",
        str(row.get("importances") or "-"),
        significant_figures(row["roi_with_tuning"], signed=True),
    ]


def task_header(table: TaskTable, swept: bool, devices: bool) -> list[str]:
    return [
        "backbone",
        "strategy",
        *(["setting", f"val {table.metric}"] if swept else []),
        *(["device"] if devices else []),
        f"{table.metric} (95% CI, n)",
        "gain (95% CI)",
        "significant",
        "device-h",
        "samples/s",
        "peak MiB",
        "trainable (share)",
        "GFLOPs/sample",
        "gain/device-h",
        *(TUNING_HEADER if _tuned(table) else []),
        "gain/M params",
        "Pareto",
        "status",
    ]


def task_rows(table: TaskTable) -> tuple[list[str], list[list[str]]]:
    """Header and display cells of one task table."""
    rows = table.rows
    swept = bool(len(rows)) and (bool(rows["setting"].astype(bool).any()) or _tuned(table))
    devices = len({d for d in rows["device"] if d}) > 1  # costs from several devices: say which row is which
    lines = []
    for row in rows.to_dict("records"):
        metric = "-"
        if row["n"]:  # the interval's bounds: clipped to the metric's range, it need not be symmetric
            metric = f"{number(row['mean'])} [{number(row['ci_low'])}, {number(row['ci_high'])}] ({row['n']})"
        if row["n"] == 1:
            metric = f"{number(row['mean'])} (1)"
        if row.get("above_trivial") is False:
            metric += f" {NOT_ABOVE_TRIVIAL}"
        gain = number(row["gain"], signed=True)
        if not missing(row["gain_ci_low"]):
            gain += f" [{number(row['gain_ci_low'], signed=True)}, {number(row['gain_ci_high'], signed=True)}]"
        share = row["trainable_pct"]
        trainable = f"{count(row['trainable_params'])} ({'-' if missing(share) else f'{share:.3g}'}%)"
        setting = str(row["setting"]) + (" (selected)" if row["selected"] and not rows["selected"].all() else "")
        flops = row["flops_per_sample"]
        lines.append(
            [
                str(row["backbone"]),
                str(row["strategy"]),
                *([setting, number(row["val_mean"])] if swept else []),
                *([row["device"] or "-"] if devices else []),
                metric,
                gain,
                _significance(row, table.baseline),
                _device_hours(row),
                number(row["samples_per_second"], 1) + (" (loader-bound)" if row.get("loader_bound") else ""),
                number(row["peak_memory_mib"], 0),
                trainable,
                "-" if missing(flops) else significant_figures(flops / 1e9),
                significant_figures(row["roi_per_device_hour"], signed=True),
                *(_tuning_cells(row) if _tuned(table) else []),
                significant_figures(row["roi_per_million_params"], signed=True),
                PARETO_MARK if row["pareto"] else "",
                str(row["status"]),
            ]
        )
    return task_header(table, swept, devices), lines


def summary_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the cross-task summary: one row per strategy, two columns per task kind."""
    summary = report.summary
    kinds = list(dict.fromkeys(summary["kind"]))
    header = [
        "strategy",
        *[f"{kind} {what}" for kind in kinds for what in ("mean rank (groups)", "mean gain", "significant gains")],
    ]
    header.append("overall mean rank")
    lines = []
    for strategy, part in summary.groupby("strategy", sort=False):
        by_kind = part.set_index("kind")
        cells = [str(strategy)]
        for kind in kinds:
            if kind in by_kind.index:
                row = by_kind.loc[kind]
                cells += [
                    f"{row['mean_rank']:.2f} ({int(row['groups'])})",
                    number(row["mean_gain"], signed=True),
                    str(int(row["significant_gains"])),
                ]
            else:
                cells += ["-", "-", "-"]
        overall = (part["mean_rank"] * part["groups"]).sum() / part["groups"].sum()
        cells.append(f"{overall:.2f}")
        lines.append(cells)
    lines.sort(key=lambda cells: float(cells[-1]))
    return header, lines


def table_title(table: TaskTable, code: Callable[[str], str] = str) -> str:
    """`task (kind; metric M, baseline B)`; `code` marks names up (markdown: backticks)."""
    baseline = f", baseline {code(table.baseline)}" if table.baseline else ""
    return f"{table.task} ({table.kind}; metric {code(table.metric)}{baseline})"

"""`bench plot`: the report's numbers as figures a reader understands without the code.

- `<task>-cost.<fmt>`: test metric (mean ± 95% CI) against training device-hours and against
  trainable parameters, both log scale, with each panel's Pareto frontier;
- `<task>-curves.<fmt>`: validation metric and training loss per epoch, one line per cell;
- `gains-heatmap.<fmt>`: mean gain over the baseline, strategy x task (averaged over backbones),
  the baseline's own row left out and significant gains marked.

Each figure is written once per format (`png`, `pdf`, `svg`) at the chosen dpi (raster formats only).
Colour always means the strategy and marker or line style the backbone: each has a legend of its own.

matplotlib is an optional extra (the `plot` extra), imported when a figure is drawn:
without it, `require_matplotlib` (and every figure) raises a one-line `BenchError` naming the extra.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.errors import BenchError
from harness.extras import install_hint
from harness.report import Report, TaskTable
from harness.stats import pareto_optimal
from harness.store import planned_results

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

MARKERS = "osD^vP*Xh<>"
FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
DEFAULT_DPI = 150
MISSING = f"bench plot needs matplotlib: {install_hint('plot')}"


def pyplot() -> ModuleType:
    """matplotlib's pyplot on the Agg backend (files only: no display needed, none opened)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot
    except ImportError:
        raise BenchError(MISSING) from None
    return matplotlib.pyplot


def require_matplotlib() -> None:
    """A one-line `BenchError` naming the `plot` extra when matplotlib is not installed."""
    pyplot()


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _colours(names: list[str]) -> dict[str, Any]:
    plt = pyplot()
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _save(fig: Any, path: Path, formats: tuple[str, ...], dpi: int) -> list[Path]:
    """The figure once per format beside `path` (its suffix replaced); closes the figure."""
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=dpi, format=fmt, bbox_inches="tight")  # no label cut at the edge
        written.append(target)
    pyplot().close(fig)
    return written


def _legends(fig: Any, by_colour: list[Any], by_shape: list[Any]) -> None:
    """Two legends outside the axes: colour means the strategy, shape or line style the backbone."""
    first = fig.legend(handles=by_colour, loc="outside right upper", title="strategy (colour)", fontsize=8)
    fig.add_artist(first)
    if by_shape:
        fig.legend(handles=by_shape, loc="outside right lower", title="backbone (shape)", fontsize=8)


def _frontier(ax: plt.Axes, x: pd.Series, y: pd.Series, flags: list[bool]) -> None:
    points = sorted((float(a), float(b)) for a, b, f in zip(x, y, flags, strict=True) if f)
    if points:
        xs, ys = zip(*points, strict=True)
        ax.step(xs, ys, where="post", color="0.3", linestyle="--", linewidth=1, label="Pareto frontier", zorder=1)
        ax.scatter(xs, ys, s=220, facecolors="none", edgecolors="0.2", linewidths=1.2, zorder=3)  # ring the members


def cost_figure(
    table: TaskTable, path: Path, formats: tuple[str, ...] = ("png",), dpi: int = DEFAULT_DPI
) -> list[Path]:
    plt = pyplot()
    rows = table.rows[(table.rows["n"] > 0)]
    strategies = list(dict.fromkeys(rows["strategy"]))
    backbones = list(dict.fromkeys(rows["backbone"]))
    colour, marker = _colours(strategies), {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(backbones)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True, layout="constrained")
    panels = [("train_device_hours", "training device-hours per cell (log scale)"),
              ("trainable_params", "trainable parameters (log scale)")]  # fmt: skip
    for ax, (column, label) in zip(axes, panels, strict=True):
        usable = rows[rows[column].astype(float) > 0]
        for row in usable.to_dict("records"):
            # the interval's own bounds: clipped to the metric's range, it need not be symmetric
            low, high = row["mean"] - row["ci_low"], row["ci_high"] - row["mean"]
            error = None if math.isnan(row["ci_low"]) else [[low], [high]]
            style = {"fmt": marker[row["backbone"]], "color": colour[row["strategy"]], "markersize": 7, "capsize": 3}
            ax.errorbar(row[column], row["mean"], yerr=error, zorder=2, **style)
        # device-hours: the report's own marks (per device); parameters: the same rule on that axis
        if column == "train_device_hours":
            flags = list(usable["pareto"])
        else:
            scores = -usable["mean"] if table.lower_is_better else usable["mean"]  # the report's direction
            flags = pareto_optimal(list(usable[column].astype(float)), list(scores.astype(float)))
        _frontier(ax, usable[column], usable["mean"], flags)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(f"test {table.metric} (mean and 95% CI, as in the table)")
    handles = [plt.Line2D([], [], color=colour[s], marker="o", linestyle="", label=s) for s in strategies]
    handles.append(plt.Line2D([], [], color="0.3", linestyle="--", marker="o", markersize=11, markerfacecolor="none",
                              label="Pareto frontier (ringed)"))  # fmt: skip
    shapes = [
        plt.Line2D([], [], color="0.4", marker=marker[b], linestyle="", markerfacecolor="none", label=b)
        for b in backbones
    ]
    _legends(fig, handles, shapes)
    devices = [d for d in dict.fromkeys(rows["device"]) if d]
    where = f"; costs from {len(devices)} devices, not comparable" if len(devices) > 1 else ""
    fig.suptitle(f"{table.task} ({table.kind}): test {table.metric} against training cost{where}")
    return _save(fig, path, formats, dpi)


def curves_figure(
    table: TaskTable, results: list, path: Path, formats: tuple[str, ...] = ("png",), dpi: int = DEFAULT_DPI
) -> list[Path]:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    cells = [r for r in results if r.task == table.task and r.status == "ok" and r.curve]
    shown = set(zip(table.rows["backbone"], table.rows["strategy"], table.rows["setting"], strict=True))
    cells = [r for r in cells if (r.backbone, r.strategy, r.setting) in shown]
    colour = _colours(list(dict.fromkeys(table.rows["strategy"])))
    backbones = list(dict.fromkeys(table.rows["backbone"]))
    styles: list[Any] = ["-", "--", ":", "-."]
    fig, (val_ax, loss_ax) = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for r in cells:
        epochs = [p["epoch"] for p in r.curve]
        style = styles[backbones.index(r.backbone) % len(styles)] if r.backbone in backbones else "-"
        values = [p.get("val", {}).get(table.metric, np.nan) for p in r.curve]
        val_ax.plot(epochs, values, style, color=colour.get(r.strategy, "0.5"), alpha=0.8, linewidth=1.2)
        loss_ax.plot(epochs, [p.get("train_loss", np.nan) for p in r.curve], style,
                     color=colour.get(r.strategy, "0.5"), alpha=0.8, linewidth=1.2)  # fmt: skip
    val_ax.set_xlabel("epoch")
    val_ax.set_ylabel(f"validation {table.metric}")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss (epoch mean)")
    for ax in (val_ax, loss_ax):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    drawn = {r.strategy for r in cells}
    handles = [plt.Line2D([], [], color=c, label=s) for s, c in colour.items() if s in drawn]
    shapes = [
        plt.Line2D([], [], color="0.4", linestyle=styles[i % len(styles)], label=b) for i, b in enumerate(backbones)
    ]
    _legends(fig, handles, shapes if len(backbones) > 1 else [])
    fig.suptitle(f"{table.task} ({table.kind}): learning curves, one line per cell (seed)")
    return _save(fig, path, formats, dpi)


def gains_heatmap(
    report: Report, path: Path, formats: tuple[str, ...] = ("png",), dpi: int = DEFAULT_DPI
) -> list[Path]:
    """Mean gain over the baseline per strategy x task, averaged over backbones, the baseline's own
    row of zeros left out; a cell is starred when its gain is significant for every backbone shown.
    Nothing is drawn (an empty list) without gains."""
    plt = pyplot()
    frame = report.to_frame()
    if frame.empty or frame["gain"].isna().all():
        return []
    baselines_of = {t.task: t.baseline for t in report.tables}
    frame = frame[[baselines_of.get(task) != strategy for task, strategy in zip(frame["task"], frame["strategy"],
                                                                              strict=True)]]  # fmt: skip
    frame = frame[frame["gain"].notna()]
    if frame.empty:
        return []
    grid = frame.pivot_table(index="strategy", columns="task", values="gain", aggfunc="mean", sort=False)
    marks = (
        frame.assign(sig=frame["significant"].map(lambda v: v is True))
        .pivot_table(index="strategy", columns="task", values="sig", aggfunc="all", sort=False)
        .reindex(index=grid.index, columns=grid.columns)
    )
    size = (max(4.5, 2.0 + 1.3 * grid.shape[1]), 1.4 + 0.45 * grid.shape[0])
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    limit = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(
        range(grid.shape[1]), [f"{t}\n({m})" for t, m in zip(grid.columns, _metrics(report, grid), strict=True)]
    )
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if not math.isnan(value):
            mark = marks.iat[i, j]
            star = "*" if not pd.isna(mark) and bool(mark) else ""
            ax.text(j, i, f"{value:+.3f}{star}", ha="center", va="center", fontsize=8,
                    color="white" if abs(value) > 0.6 * limit else "black")  # fmt: skip
    fig.colorbar(image, ax=ax, label="gain (metric units)")
    baselines = ", ".join(sorted({t.baseline for t in report.tables if t.baseline}))
    ax.set_title(f"gain over {baselines or 'the baseline'}\n(test split, mean over backbones; "
                 "* significant for every backbone)", fontsize=10)  # fmt: skip
    return _save(fig, path, formats, dpi)


def _metrics(report: Report, grid: pd.DataFrame) -> list[str]:
    by_task = {t.task: t.metric for t in report.tables}
    return [by_task.get(str(task), "") for task in grid.columns]


def write_plots(
    report: Report,
    results_dir: str | Path,
    output: Path,
    formats: tuple[str, ...] = ("png", "pdf"),
    dpi: int = DEFAULT_DPI,
) -> list[Path]:
    """Every figure of the report into `output`, once per format; returns the files written."""
    require_matplotlib()
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise BenchError(f"--format: {', '.join(unknown) or 'nothing'} is not a figure format; allowed: "
                         f"{', '.join(FORMATS)}")  # fmt: skip
    if not 10 <= dpi <= 1200:
        raise BenchError(f"--dpi: {dpi} is outside 10..1200")
    output.mkdir(parents=True, exist_ok=True)
    results = planned_results(results_dir)
    written = []
    for table in report.tables:
        stem = file_stem(table.task)
        written += cost_figure(table, output / f"{stem}-cost.png", formats, dpi)
        written += curves_figure(table, results, output / f"{stem}-curves.png", formats, dpi)
    written += gains_heatmap(report, output / "gains-heatmap.png", formats, dpi)
    return written

"""Report formats: markdown (GitHub tables), CSV and JSON."""

from __future__ import annotations

import json
import math
from typing import Any

from harness import Reporter, hookimpl
from harness.report import Report, TaskTable


def _num(value: Any, digits: int = 4, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _count(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    value = float(value)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:.0f}"


def markdown_table(table: TaskTable) -> str:
    rows = table.rows
    swept = bool(len(rows)) and bool(rows["setting"].astype(bool).any())
    header = [
        "backbone",
        "strategy",
        *(["setting", f"val {table.metric}"] if swept else []),
        f"{table.metric} (mean ± std, n)",
        "gain",
        "train s",
        "samples/s",
        "peak MiB",
        "trainable",
        "ROI (gain/device-h)",
        "status",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows.to_dict("records"):
        metric = f"{_num(row['mean'])} ± {_num(row['std'])} ({row['n']})" if row["n"] else "-"
        share = row["trainable_pct"]
        trainable = f"{_count(row['trainable_params'])} ({'-' if math.isnan(share) else f'{share:.3g}'}%)"
        setting = str(row["setting"]) + (" (selected)" if row["selected"] and not rows["selected"].all() else "")
        cells = [
            row["backbone"],
            row["strategy"],
            *([setting, _num(row["val_mean"])] if swept else []),
            metric,
            _num(row["gain"], signed=True),
            _num(row["train_seconds"], 1),
            _num(row["samples_per_second"], 1),
            _num(row["peak_memory_mib"], 0),
            trainable,
            _num(row["roi_per_device_hour"], 2, signed=True),
            str(row["status"]).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


class Markdown(Reporter):
    """GitHub-flavoured markdown tables, one per task, with the definitions."""

    name = "markdown"
    suffix = ".md"

    def render(self, report: Report) -> str:
        parts = [f"# bench report: {report.source}"]
        for table in report.tables:
            baseline = f", baseline `{table.baseline}`" if table.baseline else ""
            parts.append(f"## {table.task} ({table.kind}; metric `{table.metric}`{baseline})")
            parts.append(markdown_table(table))
            parts.extend(f"- {note}" for note in table.notes)
        parts.append(f"---\n*Definitions.* {report.definitions}")
        return "\n\n".join(parts) + "\n"


class Csv(Reporter):
    """One CSV row per task x backbone x strategy, numbers unformatted."""

    name = "csv"
    suffix = ".csv"

    def render(self, report: Report) -> str:
        return report.to_frame().to_csv(index=False)


class Json(Reporter):
    """The report as one JSON document: tasks, notes, definitions and rows."""

    name = "json"
    suffix = ".json"

    def render(self, report: Report) -> str:
        frame = report.to_frame()
        rows = json.loads(frame.to_json(orient="records")) if not frame.empty else []
        document = {
            "source": report.source,
            "definitions": report.definitions,
            "tasks": [
                {"task": t.task, "kind": t.kind, "metric": t.metric, "baseline": t.baseline, "notes": t.notes}
                for t in report.tables
            ],
            "rows": rows,
        }
        return json.dumps(document, indent=2) + "\n"


@hookimpl
def bench_reporters() -> list[type[Reporter]]:
    return [Markdown, Csv, Json]

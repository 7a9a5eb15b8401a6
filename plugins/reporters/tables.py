"""Report formats: markdown (GitHub tables), CSV and JSON."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pandas as pd
from bench_plugins.reporters.cells import summary_rows, table_title, task_rows

from harness import REPORT_SCHEMA, Report, Reporter, hookimpl, markdown_grid


class Markdown(Reporter):
    """GitHub-flavoured markdown: a table per task, the cross-task summary, the definitions."""

    name = "markdown"
    suffix = ".md"

    def render(self, report: Report) -> str:
        parts = [f"# bench report: {report.source}"]
        for table in report.tables:
            parts.append(f"## {table_title(table, lambda name: f'`{name}`')}")
            parts.append(markdown_grid(*task_rows(table)))
            parts.append("\n".join(bullet(note) for note in table.notes))
        if len(report.summary):
            parts.append("## Summary: which strategy to use")
            parts.append(markdown_grid(*summary_rows(report)))
        parts.append("---\n**Definitions.**\n\n" + "\n".join(bullet(f"**{k}**: {v}") for k, v in report.definitions))
        return "\n\n".join(p for p in parts if p) + "\n"


#: prose lines of the markdown report wrap here (tables cannot: a markdown table row is one line)
PROSE_WIDTH = 100


def bullet(text: str) -> str:
    """A markdown list item wrapped at `PROSE_WIDTH`, continued under its text (renders as one paragraph)."""
    return textwrap.fill(text, PROSE_WIDTH, initial_indent="- ", subsequent_indent="  ", break_on_hyphens=False,
                         break_long_words=False)  # fmt: skip


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN becomes null."""
    return json.loads(frame.to_json(orient="records")) if len(frame) else []


class Csv(Reporter):
    """One CSV row per task x backbone x strategy (x setting), numbers unformatted."""

    name = "csv"
    suffix = ".csv"

    def render(self, report: Report) -> str:
        frame = report.to_frame()
        lists = [c for c in ("seed_values", "seeds") if c in frame]  # a list per row: JSON carries them
        frame = frame.drop(columns=lists)  # CSV keeps to scalars
        return frame.to_csv(index=False)


class Json(Reporter):
    """The report as one JSON document (schema in docs/report.md): tasks with rows and notes, summary."""

    name = "json"
    suffix = ".json"

    def render(self, report: Report) -> str:
        document = {
            "schema": REPORT_SCHEMA,
            "source": report.source,
            "confidence": report.confidence,
            "alpha": report.alpha,
            "tasks": [
                {
                    "task": t.task,
                    "kind": t.kind,
                    "metric": t.metric,
                    "lower_is_better": t.lower_is_better,
                    "baseline": t.baseline,
                    "trivial": t.trivial,
                    "trivial_predictor": t.trivial_predictor,
                    "notes": t.notes,
                    "rows": records(t.rows),
                }
                for t in report.tables
            ],
            "summary": records(report.summary),
            "definitions": dict(report.definitions),
        }
        return json.dumps(document, indent=2) + "\n"


@hookimpl
def bench_reporters() -> list[type[Reporter]]:
    return [Markdown, Csv, Json]

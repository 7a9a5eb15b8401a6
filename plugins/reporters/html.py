"""A self-contained HTML report: one file, inline style, no script, readable offline."""

from __future__ import annotations

from html import escape

from bench_plugins.reporters.cells import PARETO_MARK, summary_rows, table_title, task_rows

from harness import Reporter, hookimpl
from harness.report import Report

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #1f2328; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #d0d7de; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { border-bottom: 2px solid #1f2328; background: #f6f8fa; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2), td:last-child { text-align: left; }
td:last-child { white-space: normal; max-width: 28em; }
tr.pareto td { background: #eef8ee; }
tr.problem td { color: #9a6700; }
caption { text-align: left; font-weight: 600; }
ul.notes { color: #57606a; }
dl dt { font-weight: 600; } dl dd { margin: 0 0 0.4em 1.5em; }
"""


def html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


class Html(Reporter):
    """One self-contained HTML page: the tables, Pareto rows shaded, the summary and the definitions."""

    name = "html"
    suffix = ".html"

    def render(self, report: Report) -> str:
        title = f"bench report: {report.source}"
        parts = [f"<h1>{escape(title)}</h1>"]
        for table in report.tables:
            header, rows = task_rows(table)
            classes = ["pareto" if row[-2] == PARETO_MARK else "problem" if row[-1] != "ok" else "" for row in rows]
            parts.append(f"<h2>{escape(table_title(table))}</h2>")
            parts.append(html_table(header, rows, classes))
            if table.notes:
                parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes) + "</ul>")
        if len(report.summary):
            parts.append("<h2>Summary: which strategy to use</h2>")
            parts.append(html_table(*summary_rows(report)))
        terms = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in report.definitions)
        parts.append(f"<h2>Definitions</h2>\n<dl>{terms}</dl>")
        return (
            f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(parts) + "\n</body>\n</html>\n"
        )


@hookimpl
def bench_reporters() -> list[type[Reporter]]:
    return [Html]

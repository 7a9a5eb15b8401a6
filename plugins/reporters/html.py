"""A self-contained HTML report: one file, inline style, no script, readable offline."""

from __future__ import annotations

from html import escape

from bench_plugins.reporters.cells import PARETO_MARK, summary_rows, table_title, task_rows

from harness import Report, Reporter, hookimpl

# The layout rule: every table fits a 1280 px window. Cells wrap at spaces (never inside a number),
# so a table's narrowest width is the sum of each column's longest unbreakable word; the first two
# columns (backbone, strategy) stay in view if a very wide table must still scroll inside its box.
WINDOW_PX = 1280
BODY_MARGIN_PX = 16
CELL_PADDING_PX = 10
CHAR_PX = 7.2  # 12.5 px system-ui with tabular figures: the widest average glyph we render
STYLE = f"""
body {{ font: 12.5px/1.4 system-ui, sans-serif; margin: 1em {BODY_MARGIN_PX}px; color: #1f2328; }}
.table-box {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; font-variant-numeric: tabular-nums; }}
th, td {{ border-bottom: 1px solid #d0d7de; padding: 3px {CELL_PADDING_PX // 2}px; text-align: right;
  white-space: normal; overflow-wrap: normal; vertical-align: top; }}
th {{ border-bottom: 2px solid #1f2328; background: #f6f8fa; }}
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2), td:last-child, th:last-child {{ text-align: left; }}
td:first-child, th:first-child {{ position: sticky; left: 0; background: #fff; }}
th:first-child {{ background: #f6f8fa; }}
td:last-child {{ max-width: 22em; }}
tr.pareto td {{ background: #eef8ee; }}
tr.problem td {{ color: #9a6700; }}
ul.notes {{ color: #57606a; max-width: 110em; }}
dl dt {{ font-weight: 600; }} dl dd {{ margin: 0 0 0.4em 1.5em; }}
"""


def narrowest_width_px(header: list[str], rows: list[list[str]]) -> float:
    """The table's width when every cell wraps at its spaces: the layout rule's measure."""
    total = 0.0
    for i, name in enumerate(header):
        words = [w for text in [name, *(row[i] for row in rows)] for w in text.split()]
        total += max((len(w) for w in words), default=0) * CHAR_PX + CELL_PADDING_PX
    return total


def html_table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    return (
        f'<div class="table-box"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table></div>"
    )


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

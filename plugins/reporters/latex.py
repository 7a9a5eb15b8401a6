"""A LaTeX report with booktabs tables: a complete document that compiles, whose tables paste into a paper."""

from __future__ import annotations

from bench_plugins.reporters.cells import PARETO_MARK, summary_rows, table_title, task_rows

from harness import Report, Reporter, hookimpl

SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    PARETO_MARK: r"$\star$",
    "²": r"$^2$",
    "√": r"$\surd$",
}


def latex_escape(text: str) -> str:
    return "".join(SPECIAL.get(ch, ch) for ch in text)


def tabular(header: list[str], rows: list[list[str]], caption: str, labels: int = 1, text_last: bool = False) -> str:
    """A booktabs table: `labels` text columns left, numbers right; `text_last` wraps a long last column."""
    numbers = len(header) - labels - (1 if text_last else 0)
    spec = "l" * labels + "r" * numbers + ("p{6cm}" if text_last else "")
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        r"\resizebox{\textwidth}{!}{%",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in header) + r" \\",
        r"\midrule",
        *(" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule",
        r"\end{tabular}}",
        r"\end{table}",
    ]
    return "\n".join(lines)


class Latex(Reporter):
    """A LaTeX document (booktabs): one table per task, the summary, the definitions."""

    name = "latex"
    suffix = ".tex"

    def render(self, report: Report) -> str:
        parts = [
            r"\documentclass{article}",
            r"\usepackage[margin=2cm,landscape]{geometry}",
            r"\usepackage[utf8]{inputenc}",
            r"\usepackage{booktabs}",
            r"\usepackage{graphicx}",
            r"\begin{document}",
            rf"\section*{{{latex_escape('bench report: ' + report.source)}}}",
        ]
        for table in report.tables:
            header, rows = task_rows(table)
            parts.append(tabular(header, rows, table_title(table), labels=2, text_last=True))
            if table.notes:
                notes = "\n".join(rf"\item {latex_escape(n)}" for n in table.notes)
                parts.append(f"\\begin{{itemize}}\n{notes}\n\\end{{itemize}}")
        if len(report.summary):
            header, rows = summary_rows(report)
            parts.append(tabular(header, rows, "Summary: which strategy to use"))
        terms = "\n".join(rf"\item[{latex_escape(k)}] {latex_escape(v)}" for k, v in report.definitions)
        parts.append(f"\\subsection*{{Definitions}}\n\\begin{{description}}\n{terms}\n\\end{{description}}")
        parts.append(r"\end{document}")
        return "\n\n".join(parts) + "\n"


@hookimpl
def bench_reporters() -> list[type[Reporter]]:
    return [Latex]

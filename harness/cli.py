"""The `bench` command: a thin Typer layer over `run_suite`, `plan_cells`, `build_report` and the registry.

User mistakes (`BenchError`) print one line on stderr and exit with code 2, without traceback.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import BenchError, Terminated
from harness.formatting import clip_message
from harness.records import plain_records

if TYPE_CHECKING:
    from harness.planning import Plan
    from harness.settings import Suite


class _Stdout(Console):
    """stdout whose reader may go away (`bench plan | head -1`): then exit 0 quietly, not rich's 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _quiet_stdout()
        raise SystemExit(0)


stderr = Console(stderr=True, highlight=False)
stdout = _Stdout(highlight=False, soft_wrap=True)
P = ParamSpec("P")


def user_errors(command: Callable[P, None]) -> Callable[P, None]:
    """A `BenchError` becomes one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
            sys.stdout.flush()  # here, where a closed pipe can still be handled
        except BrokenPipeError:
            _quiet_stdout()
            raise typer.Exit(0) from None
        except BenchError as exc:
            # one line, whatever the message echoes (line breaks, control characters in user input)
            text = clip_message("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc)))
            stderr.print(f"error: {text}", markup=False, emoji=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def _quiet_stdout() -> None:
    """The reader of stdout went away (`bench plan | head -1`): not an error.

    As Python's documentation advises, stdout goes to devnull so that the interpreter's last
    flush does not fail again.
    """
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. under a test runner)
        pass


def create_app() -> typer.Typer:
    app = typer.Typer(
        name="bench",
        help="Which fine-tuning strategy pays off, for which backbone, on which vision task, at what cost.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    commands = (
        ("run", run),
        ("plan", plan),
        ("report", report),
        ("plot", plot),
        ("compare", compare),
        ("plugins", plugins),
        ("weights", weights),
    )
    for name, command in commands:
        app.command(name)(user_errors(command))
    return app


class _GivenPath(type(Path())):  # type: ignore[misc]
    """A path with the text it was given as (pathlib drops a trailing '/', which names a folder)."""

    given = ""


def _suite_argument(text: str | Path) -> Path:
    path = _GivenPath(text)
    path.given = str(text)
    return path


SuiteArg = Annotated[
    Path,
    typer.Argument(
        help="Suite file (TOML), or the name of a bundled suite (default: the quickstart).", parser=_suite_argument
    ),
]
DEFAULT_SUITE = Path("quickstart")
SeedsOption = Annotated[
    str | None, typer.Option(help="Seeds to run, comma-separated, e.g. 0,1,2 (overrides the suite's).")
]


OutputOption = Annotated[
    str | None, typer.Option(help="Results directory (overrides the suite's; `plan` shows what is done there).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="PATH=VALUE",
        help="Change a setting of the suite before it is validated, e.g. training.epochs=1, "
        "tasks.NAME.training.batch_size=4, strategies.lora.options.rank=[4,8] (repeatable; see docs/suites.md).",
    ),
]
SetAllOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set-all",
        metavar="training.KEY=VALUE",
        help="Like --set training.KEY=VALUE, and also in every task, strategy and pretraining stage that sets "
        "KEY itself, e.g. --set-all training.epochs=1 for a smoke run (repeatable).",
    ),
]
OnlyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        metavar="KEY=VALUE,...",
        help="Only these cells, e.g. task=shapes-cls,strategy=full,strategy=lora (keys: task, backbone, "
        "strategy, seed, setting; keys ANDed, values of a key ORed; repeatable). "
        "The cells whose models they need (teachers, inputs) stay in.",
    ),
]


def parse_output(text: str | None) -> str | None:
    """A results directory given on the command line: a path, not an empty string (the current folder)."""
    if text is not None and not text.strip():
        raise BenchError("--output: empty; give a results directory, e.g. results/mine")
    return text


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if not all(part.isascii() and part.isdigit() for part in parts):  # int() would take "1_0", "+1", "٣"
        raise BenchError(f"--seeds: {text!r} is not a comma-separated list of integers from 0 up, e.g. 0,1,2")
    return [int(part) for part in parts]


def suite_path(suite: Path) -> Path:
    """A path as given, or a suite bundled with bench (`quickstart`) when no such file exists."""
    if "\0" in str(suite) or not str(suite).strip():
        raise BenchError(f"{str(suite)!r}: not a file name")
    given = getattr(suite, "given", str(suite))
    if given.endswith(("/", os.sep)):
        raise BenchError(f"{given}: a trailing '/' names a folder; allowed: a suite file (TOML) or a bundled suite")
    try:
        if suite.exists() or suite.is_symlink() or suite.suffix:
            return suite
    except OSError:  # a name too long, say: reading it says why
        return suite
    bundled = Path(str(files("bench_suites").joinpath(f"{suite.name}.toml")))
    if bundled.is_file():
        return bundled
    names = sorted(p.name.removesuffix(".toml") for p in files("bench_suites").iterdir() if p.name.endswith(".toml"))
    raise BenchError(f"{suite}: no such suite file or bundled suite; bundled: {', '.join(names)}")


def load_given(
    suite: Path,
    overrides: list[str] | None,
    *,
    output: str | None,
    device: str | None,
    seeds: str | None,
    set_all: list[str] | None = None,
) -> Suite:
    """The suite `run` and `plan` work on: the file (or bundled suite) with its `--set-all` and then
    `--set` overrides applied before validation, then `--output`, `--device` and `--seeds`, which win
    over them. A `--set` that an entry's own setting shadows is a warning line on stderr."""
    from harness.overrides import Override, ShadowedOverride, parse_override
    from harness.suite import load_suite, with_overrides

    given: list[str | Override] = [parse_override(text, everywhere=True) for text in set_all or ()]
    given.extend(overrides or ())
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", ShadowedOverride)
        loaded = load_suite(suite_path(suite), overrides=given)
    for warning in said:
        if issubclass(warning.category, ShadowedOverride):
            stderr.print(f"warning: {warning.message}", markup=False, soft_wrap=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return with_overrides(
        loaded,
        output=parse_output(output),
        device=device,
        seeds=parse_seeds(seeds),
    )


def run(
    suite: SuiteArg = DEFAULT_SUITE,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Recompute everything, pretraining included, even ok results.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars: one log line per cell.")] = False,
    output: OutputOption = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N (overrides the suite's).")] = None,
    seeds: SeedsOption = None,
    executor: Annotated[
        str | None,
        typer.Option(help="sequential, processes, ray, ... (overrides the suite's; its options are kept if same)."),
    ] = None,
    logger: Annotated[
        list[str] | None,
        typer.Option(help="Also log the run with this logger (tensorboard, mlflow, ...); repeat for several."),
    ] = None,
    overrides: SetOption = None,
    set_all: SetAllOption = None,
    only: OnlyOption = None,
) -> None:
    """Run every cell of SUITE that has no ok result yet; results go to the suite's output directory."""
    from harness.driver import run_suite
    from harness.progress import QuietProgress, RichProgress
    from harness.registry import default_registry
    from harness.selection import parse_only
    from harness.suite import check_loggers, with_overrides

    selected = parse_only(only)
    loaded = load_given(suite, overrides, output=output, device=device, seeds=seeds, set_all=set_all)
    if executor is not None and executor != loaded.executor.name:
        allowed = default_registry().names("executor")
        if executor not in allowed:
            raise BenchError(f"--executor: unknown executor {executor!r}; allowed: {', '.join(allowed)}")
        loaded = with_overrides(loaded, executor={"name": executor})
    if logger:
        named = {spec.name for spec in loaded.loggers}
        added = [{"name": name} for name in dict.fromkeys(logger) if name not in named]
        loaded = with_overrides(loaded, loggers=[*(s.model_dump() for s in loaded.loggers), *added])
        check_loggers(loaded, default_registry(), "--logger")
    registry = default_registry()
    display = QuietProgress(stderr) if quiet or not stderr.is_terminal else RichProgress()
    registry.pm.register(display, name="progress-display")
    previous = _stop_on_sigterm()
    try:
        summary = run_suite(loaded, registry, fresh=fresh, only=selected)
    except KeyboardInterrupt as exc:
        display.close()
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        stderr.print(f"{what}; finished cells are kept in {loaded.output_dir()}", markup=False)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    finally:
        registry.pm.unregister(display)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    display.close()
    stderr.print(summary.describe(), markup=False, soft_wrap=True)
    stderr.print(f"results: {summary.output}", markup=False)
    stderr.print(f"report:  bench report {summary.output} --format markdown", markup=False)
    if summary.stopped:
        stderr.print(f"error: {summary.stopped}", markup=False, soft_wrap=True)
    if summary.failed or summary.stopped:
        raise typer.Exit(1)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _stop_on_sigterm() -> Any:
    """SIGTERM stops a run as Ctrl-C does (the handler raises in the main thread); the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _terminate)


PLAN_FORMATS = ("table", "csv", "json")


def plan(
    suite: SuiteArg = DEFAULT_SUITE,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Time a few synthetic training steps where no throughput is recorded.")
    ] = False,
    device: Annotated[
        str | None, typer.Option(help="Device to calibrate on and to estimate for (default: the suite's).")
    ] = None,
    seeds: SeedsOption = None,
    output: OutputOption = None,
    tflops: Annotated[
        float | None,
        typer.Option(
            "--tflops",
            help="Effective TFLOPS of the target device, for estimates from FLOPs "
            "(default: 100, an A100-class GPU at a third of its peak; a known GPU's or the CPU's own figure).",
        ),
    ] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="table, csv or json (table is plain text when not on a terminal).")
    ] = "table",
    overrides: SetOption = None,
    set_all: SetAllOption = None,
    only: OnlyOption = None,
) -> None:
    """List the grid of SUITE without running it: each cell, its state, and what the cells to run will cost."""
    import json

    from harness.estimate import absent_device_note
    from harness.planning import make_plan
    from harness.registry import default_registry
    from harness.selection import parse_only

    if format not in PLAN_FORMATS:
        raise BenchError(f"--format: unknown format {format!r}; allowed: {', '.join(PLAN_FORMATS)}")
    if tflops is not None and not (tflops > 0 and math.isfinite(tflops)):
        raise BenchError(f"--tflops: {tflops:g} is not a throughput; give the device's effective TFLOPS, e.g. 100")
    selected = parse_only(only)
    loaded = load_given(suite, overrides, output=output, device=device, seeds=seeds, set_all=set_all)
    target = device or loaded.device

    def said(line: str) -> None:
        stderr.print(line, markup=False, soft_wrap=True)

    note = absent_device_note(target, tflops, loaded.source)
    planned = make_plan(
        loaded, default_registry(), selected, device=target, tflops=tflops, calibrate=calibrate, progress=said,
        before_estimate=(lambda: said(f"note: {note}")) if note else None,
    )  # fmt: skip
    if format == "json":
        sys.stdout.write(json.dumps(planned.to_json(), indent=2) + "\n")
    elif format == "csv":
        sys.stdout.write(planned.to_csv())
    else:
        _print_plan(planned)


def _print_plan(planned: Plan) -> None:
    """The plan as a table of cells, a line per skip reason and pretraining stage, and the estimate."""
    swept = any(p.cell.setting for p in planned.cells)
    columns = ("#", "task", "backbone", "strategy", *(["setting"] if swept else []), "seed", "key", "state")
    printed = [
        [str(p.index), p.cell.task, p.cell.backbone, p.cell.strategy, *([p.cell.setting] if swept else []),
         str(p.cell.seed), p.cell.key[:10], p.state]
        for p in planned.cells
    ]  # fmt: skip
    name, selected, count = planned.suite.name, planned.selected, len(planned.cells)
    title = f"{name}: {count} of {planned.grid_size} cells ({selected})" if selected else f"{name}: {count} cells"
    if printed or not planned.searches:
        _print_rows(title, columns, printed)
    if selected:
        needed = [str(p.index) for p in planned.cells if not selected.matches(p.cell)]
        if needed:
            _say(f"cells whose models the selected cells need (teachers, inputs): {', '.join(needed)}")
    reasons: dict[str, list[int]] = {}
    for p in planned.cells:
        if p.cell.skip_reason:
            reasons.setdefault(p.cell.skip_reason, []).append(p.index)
    for reason, indices in reasons.items():
        _say(f"skipped: {reason} (cells {', '.join(map(str, indices))})")
    for s in planned.stages:
        cached = "checkpoint cached" if s.state == "done" else "to run"
        _say(f"pretraining {s.spec.name!r}: {s.spec.backbone} on {s.spec.dataset.name} ({s.spec.kind}), {cached}")
    states = ", ".join(f"{n} {state}" for state, n in planned.counts().items()) or "no grid cell (all searched)"
    _say(f"{states}; results in {planned.results}")
    if planned.todo:
        _print_estimate(planned.groups, planned.walls)
    _print_searches(planned)


def _print_searches(planned: Plan) -> None:
    """A line per search: its trials and final runs, done and to run, and their estimated device-hours."""
    for s in planned.searches:
        cost = ""
        if s.tuning_hours is not None and s.final_hours is not None:
            cost = f"; est. {_hours(s.tuning_hours)} device-hours of trials + {_hours(s.final_hours)} of final runs"
        _say(
            f"search {s.task} / {s.backbone} / {s.strategy} ({s.method}): {s.budget} trials ({s.trials_done} done), "
            f"then {s.finals} final runs ({s.finals_done} done){cost}"
        )
    if planned.searches:
        _say("note: searches are estimated at each strategy's base setting; a searched epochs or batch size changes it")


def _say(text: str) -> None:
    """One line of plain text on stdout, never wrapped, no markup."""
    stdout.print(text, markup=False, emoji=False, highlight=False)


def _print_rows(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table: rich on a terminal; elsewhere plain aligned columns, one line per row, numbers right-aligned."""
    import re

    numeric = [all(re.fullmatch(r"[-+]?[\d,.]+|-", row[i]) for row in rows) for i in range(len(columns))]
    if stdout.is_terminal:
        table = Table(title=escape(title), title_justify="left")
        for column, right in zip(columns, numeric, strict=True):
            table.add_column(column, justify="right" if right else "left")
        for row in rows:
            table.add_row(*(escape(x) for x in row))
        stdout.print(table)
        return
    widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        cells = (v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True))
        return "  ".join(cells).rstrip()

    _say("\n".join([title, line(columns), *(line(row) for row in rows)]))


def _hours(value: float) -> str:
    """Device-hours with two significant digits at least (0.42, 0.0031), never in scientific notation."""
    import math

    if value >= 0.1 or value <= 0:
        return f"{value:.2f}"
    return f"{value:.{min(1 - math.floor(math.log10(value)), 9)}f}"


def _duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.1f} h"
    if hours * 60 >= 1:
        return f"{hours * 60:.1f} min"
    return f"{hours * 3600:.2g} s"


def _print_estimate(groups: list[Any], walls: dict[int, float]) -> None:
    columns = ("task", "backbone", "cells", "train images", "eval images", "train images/s", "device-hours", "from")
    rows = []
    for g in groups:
        rate = f"{g.images_per_second:.1f}" if g.images_per_second else "-"
        hours = _hours(g.device_hours) if g.device_hours is not None else "-"
        sized = g.train_images or g.eval_images
        images = (f"{g.train_images:,}", f"{g.eval_images:,}") if sized else ("-", "-")
        rows.append((g.task, g.backbone, str(g.cells), *images, rate, hours, g.source))
    _print_rows("estimated cost of the cells to run", columns, rows)
    known = [g.device_hours for g in groups if g.device_hours is not None]
    missing = len(groups) - len(known)
    if not known:
        _say(
            f"estimated total: unknown, no throughput recorded, calibrated or counted for any of the {missing} groups; "
            "`bench plan --calibrate` measures it on this machine"
        )
        return
    total = f"{_hours(sum(known))} device-hours" + (f" (+ {missing} groups not estimated)" if missing else "")
    _say(f"estimated total: {total}; full fine-tuning throughput, an upper bound for frozen strategies")
    slots = ", ".join(f"{n} slot{'s' * (n != 1)} {_duration(hours)}" for n, hours in walls.items())
    left = f"; the cells of {missing} groups not estimated left out" if missing else ""
    _say(f"wall time: {slots} (teachers and pretraining stages before the cells that need them{left})")


def emit(text: str, output: Path | None) -> None:
    """A rendered document to `output` (folders created), or to stdout."""
    if output:
        if not str(output).strip() or output.is_dir():
            raise BenchError(f"--output: {str(output)!r} is a folder; give a file name")
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text)
        except OSError as exc:
            raise BenchError(f"--output: cannot write {str(output)!r}: {exc.strerror or exc}") from None
        stderr.print(f"wrote {output}", markup=False)
    else:
        sys.stdout.write(text)


def report(
    results: Annotated[Path, typer.Argument(help="Results directory, e.g. results/quickstart.")] = Path(
        "results/quickstart"
    ),
    format: Annotated[
        str,
        typer.Option("--format", "-f", help="markdown, csv, json, html, latex, or a plugin's: see `bench plugins`."),
    ] = "markdown",
    baseline: Annotated[
        str | None, typer.Option(help="Strategy to measure gains against (default: the suite's).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric to report (default: each task's).")] = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="Only this task (repeatable).")] = None,
    backbone: Annotated[list[str] | None, typer.Option("--backbone", help="Only this backbone (repeatable).")] = None,
    strategy: Annotated[
        list[str] | None,
        typer.Option("--strategy", help="Only this strategy (repeatable); gains still use the baseline."),
    ] = None,
    sort: Annotated[str, typer.Option(help="Row order: plan, metric, gain, roi or cost.")] = "plan",
    alpha: Annotated[float, typer.Option(help="Significance threshold of the gains' Holm-corrected tests.")] = 0.05,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    all_settings: Annotated[
        bool, typer.Option("--all-settings", help="Show every swept setting, not only the one selected on validation.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="KEY=VALUE,...",
            help="Only these rows, e.g. task=shapes-cls,strategy=full (keys: task, backbone, strategy; "
            "as --task, --backbone, --strategy; repeatable).",
        ),
    ] = None,
) -> None:
    """Print the report of a results directory: per task, metric with CI, gain and significance, cost, ROI."""
    from harness.registry import default_registry
    from harness.report import ReportOptions, build_report

    registry = default_registry()
    if format not in registry.components["reporter"]:
        raise BenchError(f"--format: unknown format {format!r}; allowed: {', '.join(registry.names('reporter'))}")
    chosen = _report_filters(results, only, {"task": task, "backbone": backbone, "strategy": strategy})
    options = ReportOptions(
        metric, baseline, chosen["task"], chosen["backbone"], chosen["strategy"], sort, alpha, all_settings
    )
    if output is not None:
        _outside_results(output, results)
    built = build_report(results, options)
    for skipped in built.skipped:
        stderr.print(f"warning: skipped {skipped}", markup=False, soft_wrap=True)
    emit(registry.create("reporter", format).render(built), output)


def _outside_results(output: Path, results: Path) -> None:
    """A report is not written among the cell documents (`cells/`), where runs would take it for a cell."""
    try:
        inside = output.resolve().is_relative_to((results / "cells").resolve())
    except (OSError, RuntimeError, ValueError):
        return  # emit() says why the path cannot be written
    if inside:
        raise BenchError(
            f"--output: {str(output)!r} is inside {str(results / 'cells')!r}; allowed: a file outside the cells folder"
        )


def _report_filters(
    results: Path, only: list[str] | None, given: dict[str, list[str] | None]
) -> dict[str, tuple[str, ...]]:
    """The report's --task, --backbone, --strategy, narrowed by `--only` (which takes the same keys)."""
    from harness.selection import check_values, parse_only
    from harness.store import read_planned

    chosen = {key: tuple(values or ()) for key, values in given.items()}
    selected = parse_only(only, keys=tuple(given))
    if not selected:
        return chosen
    found = read_planned(results).results
    check_values(selected, {key: list(dict.fromkeys(getattr(r, key) for r in found)) for key in given}, str(results))
    for key, values in selected.values.items():
        both = tuple(v for v in chosen[key] if v in values) if chosen[key] else values
        if not both:
            asked = ",".join(f"{key}={v}" for v in values)
            raise BenchError(f"--only {asked}: no {key} in common with --{key} {', '.join(chosen[key])}")
        chosen[key] = both
    return chosen


def plot(
    results: Annotated[Path, typer.Argument(help="Results directory, e.g. results/quickstart.")] = Path(
        "results/quickstart"
    ),
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Folder for the PNGs (default: RESULTS/plots).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Strategy to measure gains against (default: the suite's).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric to plot (default: each task's).")] = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="Figure formats, comma-separated: png, pdf, svg.")
    ] = "png,pdf",
    dpi: Annotated[int, typer.Option(help="Resolution of the raster formats (png), 10..1200.")] = 150,
) -> None:
    """Draw figures (PNG and PDF by default): metric vs cost with the Pareto frontier, curves, a gain heatmap,
    and where strategies were searched, their tuning curves."""
    from harness.plots import require_matplotlib, write_plots
    from harness.report import ReportOptions, build_report
    from harness.settings import output_problem
    from harness.tuning_plot import write_tuning_plots

    require_matplotlib()  # the `plot` extra, before any other work
    folder = Path(parse_output(output) or results / "plots")
    problem = output_problem(folder)
    if problem:
        raise BenchError(f"--output: {problem}")
    built = build_report(results, ReportOptions(metric=metric, baseline=baseline))
    formats = tuple(f.strip() for f in format.split(",") if f.strip())
    try:  # write_plots reads the cells again and warns of the files it skips
        written = write_plots(built, results, folder, formats, dpi)
        written += write_tuning_plots(results, folder, formats, dpi)  # where the suite had searches
    except OSError as exc:
        raise BenchError(f"--output: cannot write into {str(folder)!r}: {exc.strerror or exc}") from None
    for path in written:
        stdout.print(str(path))


def compare(
    run_a: Annotated[Path, typer.Argument(help="The reference results directory.")],
    run_b: Annotated[Path, typer.Argument(help="The results directory compared with it.")],
    metric: Annotated[str | None, typer.Option(help="Metric to compare (default: each task's).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance threshold of the gains' Holm-corrected tests.")] = 0.05,
    format: Annotated[str, typer.Option("--format", "-f", help="markdown, csv or json.")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="regression|missing",
            help="Exit 1 on: regression (a cell's metric got worse by more than --tolerance and, with two or "
            "more seeds a side, beyond noise; or ok in A and not in B), missing (a cell, i.e. a seed, of A "
            "absent from B); repeatable or comma-separated.",
        ),
    ] = None,
    tolerance: Annotated[
        str | None,
        typer.Option(
            metavar="AMOUNT|PCT%",
            help="How much worse B may be: an amount of the metric (0.01) or a share of A's value (2%). "
            "With fewer than two seeds a side, only a given tolerance gates on the drop.",
        ),
    ] = None,
) -> None:
    """Which cells changed beyond noise between two result directories (same statistics as the report)."""
    from harness.compare import (
        FORMATS,
        compare_runs,
        gate,
        gate_summary,
        parse_fail_on,
        parse_tolerance,
        render_comparison,
        untested,
    )

    if format not in FORMATS:
        raise BenchError(f"--format: unknown format {format!r}; allowed: {', '.join(FORMATS)}")
    failing_on = parse_fail_on(fail_on)
    allowed = parse_tolerance(tolerance)
    with warnings.catch_warnings(record=True) as said:  # the files each run skipped, said here on stderr
        warnings.simplefilter("always")
        compared = compare_runs(run_a, run_b, metric=metric, alpha=alpha, tolerance=allowed)
    for warning in said:
        stderr.print(f"warning: {warning.message}", markup=False, soft_wrap=True)
    emit(render_comparison(compared, format), output)
    if not failing_on:
        return
    if "regression" in failing_on and (blind := untested(compared)):
        give = "too few seeds to test; give --tolerance to gate on the drop"
        gated = f"gated on the drop alone (tolerance {allowed})" if allowed else give
        stderr.print(
            f"note: {blind} cell{'s' if blind > 1 else ''} with fewer than two ok seeds on a side: {gated}",
            markup=False,
            soft_wrap=True,
        )
    failures = gate(compared, failing_on)
    for failure in failures:
        stderr.print(failure.line(), markup=False, soft_wrap=True)
    if failures:
        stderr.print(gate_summary(failures, alpha, allowed), markup=False, soft_wrap=True)
        raise typer.Exit(1)


def plugins() -> None:
    """List every registered component, the package that provides it and that package's version."""
    from harness.registry import default_registry

    registry = default_registry()
    columns = ("kind", "name", "provided by", "version", "what")
    rows = []
    for entry in registry.all():
        doc = (entry.cls.__doc__ or "").strip().splitlines()
        release = f"{entry.distribution} {entry.version}" if entry.distribution else "-"
        rows.append((entry.kind, entry.name, entry.provider, release, doc[0] if doc else ""))
    if not stdout.is_terminal:  # a pipe or a file: every value whole, within 80 columns
        stdout.print(plain_records(rows, 2, columns), markup=False, highlight=False)
    else:
        table = Table(title="bench plugins", title_justify="left")
        for column in columns[:4]:
            table.add_column(column, no_wrap=True)  # whole words, so `bench plugins | grep NAME` finds them
        table.add_column(columns[4])
        for row in rows:
            table.add_row(*row)
        stdout.print(table)
    for broken in registry.broken:  # left out, so their authors see why
        where = f" ({broken.file})" if broken.file else ""
        line = f"broken: {broken.provider}{where}: {broken.reason}"
        stdout.print(line, markup=False, highlight=False, soft_wrap=True)


def weights(
    backbones: Annotated[list[str] | None, typer.Argument(help="Backbones to show (default: all).")] = None,
    fetch: Annotated[bool, typer.Option("--fetch", help="Download the --name weights into the cache.")] = False,
    name: Annotated[str, typer.Option("--name", help="Which weights --fetch downloads.")] = "DEFAULT",
) -> None:
    """List the pretrained weights each backbone publishes and whether they are cached; --fetch downloads them."""
    import torch

    from harness.registry import default_registry
    from harness.weights import fetch_named, hub_path, resolve_named

    registry = default_registry()
    chosen = backbones or registry.names("backbone")
    for backbone in chosen:
        if backbone not in registry.components["backbone"]:
            raise BenchError(f"unknown backbone {backbone!r}; allowed: {', '.join(registry.names('backbone'))}")
    if fetch:
        for backbone in chosen:
            plugin = registry.create("backbone", backbone)
            try:
                named = resolve_named(plugin, name)
            except ValueError as exc:
                raise BenchError(f"--name: {exc}") from None
            stderr.print(f"{backbone} {named.name}: {fetch_named(named)}", markup=False)
    title = f"published weights (cache: {torch.hub.get_dir()}/checkpoints)"
    columns = ("backbone", "weights", "cached", "file", "what")
    rows = []
    for backbone in chosen:
        for label, named in registry.create("backbone", backbone).named_weights().items():
            cached = "cached" if hub_path(named).is_file() else "not cached"
            rows.append((backbone, label, cached, named.filename, named.description))
    if not stdout.is_terminal:  # a pipe or a file: the file name whole, within 80 columns
        cache = f"published weights\n    cache: {torch.hub.get_dir()}/checkpoints\n"
        stdout.print(cache + plain_records(rows, 3, columns), markup=False, highlight=False)
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=column == "file")  # the one value to copy is never cut
    for row in rows:
        table.add_row(*row)
    stdout.print(table)


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Warnings (e.g. a plugin that failed to load) as one plain line on stderr."""
    stderr.print(f"warning: {message}", markup=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _show_warning
    try:
        create_app()()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(0)

"""The `bench` command: a thin Typer layer over `run_suite`, `plan_cells`, `build_report` and the registry.

User mistakes (`BenchError`) print one line on stderr and exit with code 2, without traceback.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import BenchError

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)
P = ParamSpec("P")


def user_errors(command: Callable[P, None]) -> Callable[P, None]:
    """A `BenchError` becomes one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except BenchError as exc:
            stderr.print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


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


SuiteArg = Annotated[
    Path,
    typer.Argument(help="Suite file (TOML), or the name of a bundled suite (default: the quickstart)."),
]
DEFAULT_SUITE = Path("quickstart")
SeedsOption = Annotated[
    str | None, typer.Option(help="Seeds to run, comma-separated, e.g. 0,1,2 (overrides the suite's).")
]


def parse_seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise BenchError(f"--seeds: {text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None


def suite_path(suite: Path) -> Path:
    """A path as given, or a suite bundled with bench (`quickstart`) when no such file exists."""
    if suite.exists() or suite.suffix:
        return suite
    bundled = Path(str(files("bench_suites").joinpath(f"{suite.name}.toml")))
    if bundled.is_file():
        return bundled
    names = sorted(p.name.removesuffix(".toml") for p in files("bench_suites").iterdir() if p.name.endswith(".toml"))
    raise BenchError(f"{suite}: no such suite file or bundled suite; bundled: {', '.join(names)}")


def run(
    suite: SuiteArg = DEFAULT_SUITE,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Recompute everything, pretraining included, even ok results.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars: one log line per cell.")] = False,
    output: Annotated[Path | None, typer.Option(help="Results directory (overrides the suite's).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, cuda:N (overrides the suite's).")] = None,
    seeds: SeedsOption = None,
) -> None:
    """Run every cell of SUITE that has no ok result yet; results go to the suite's output directory."""
    from harness.progress import QuietObserver, RichObserver
    from harness.runner import run_suite
    from harness.suite import load_suite, with_overrides

    loaded = with_overrides(
        load_suite(suite_path(suite)), output=str(output) if output else None, device=device, seeds=parse_seeds(seeds)
    )
    observer = QuietObserver(stderr) if quiet or not stderr.is_terminal else RichObserver()
    try:
        summary = run_suite(loaded, fresh=fresh, observer=observer)
    except KeyboardInterrupt:
        observer.close()
        stderr.print(f"interrupted; finished cells are kept in {loaded.output_dir()}")
        raise typer.Exit(130) from None
    observer.close()
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items())) or "nothing to run"
    stderr.print(f"{summary.total} cells: {summary.reused} already done, this run: {counts}")
    stderr.print(f"results: {summary.output}")
    stderr.print(f"report:  bench report {summary.output} --format markdown")
    if summary.failed:
        raise typer.Exit(1)


def plan(
    suite: SuiteArg = DEFAULT_SUITE,
    calibrate: Annotated[
        bool, typer.Option("--calibrate", help="Time a few synthetic training steps where no throughput is recorded.")
    ] = False,
    device: Annotated[str | None, typer.Option(help="Device to calibrate on (default: the suite's).")] = None,
    seeds: SeedsOption = None,
) -> None:
    """List the grid of SUITE without running it: each cell, its state, and what the cells to run will cost."""
    from harness.cell import plan_cells, pretrain_cell
    from harness.registry import default_registry
    from harness.store import Store
    from harness.suite import load_suite, with_overrides

    loaded = with_overrides(load_suite(suite_path(suite)), seeds=parse_seeds(seeds))
    registry = default_registry()
    store = Store(loaded.output_dir())
    cells = plan_cells(loaded, registry)
    table = Table(title=f"{loaded.name}: {len(cells)} cells", title_justify="left")
    swept = any(cell.setting for cell in cells)
    for column in ("#", "task", "backbone", "strategy", *(["setting"] if swept else []), "seed", "key", "state"):
        table.add_column(column)
    states: dict[str, int] = {}
    reasons: dict[str, list[int]] = {}
    for i, cell in enumerate(cells, 1):
        state = "skipped" if cell.skip_reason else "done" if store.is_done(cell.key, cell.keep_model) else "to run"
        states[state] = states.get(state, 0) + 1
        if cell.skip_reason:
            reasons.setdefault(cell.skip_reason, []).append(i)
        setting = [escape(cell.setting)] if swept else []
        table.add_row(str(i), cell.task, cell.backbone, cell.strategy, *setting, str(cell.seed), cell.key[:10], state)
    stdout.print(table)
    for reason, numbers in reasons.items():
        stdout.print(f"skipped: {reason} (cells {', '.join(map(str, numbers))})")
    for spec in loaded.pretrain:
        key = pretrain_cell(spec, loaded, registry).key
        done = store.checkpoint_path(key).is_file()
        stdout.print(
            f"pretraining {spec.name!r}: {spec.backbone} on {spec.dataset.name} ({spec.kind}), "
            f"{'checkpoint cached' if done else 'to run'}"
        )
    stdout.print(", ".join(f"{n} {state}" for state, n in states.items()) + f"; results in {store.root}")
    todo = [c for c in cells if not c.skip_reason and not store.is_done(c.key, c.keep_model)]
    if todo:
        _print_estimate(todo, registry, store, device or loaded.device, calibrate)


def _print_estimate(cells: list[Any], registry: Any, store: Any, device: str, calibrate: bool) -> None:
    from harness.estimate import estimate

    groups = estimate(cells, registry, store, device, calibrate)
    table = Table(title="estimated cost of the cells to run", title_justify="left")
    columns = ("task", "backbone", "cells", "train images", "eval images", "train images/s", "device-hours", "from")
    for column in columns:
        table.add_column(column)
    for g in groups:
        rate = f"{g.images_per_second:.1f}" if g.images_per_second else "-"
        hours = f"{g.device_hours:.2f}" if g.device_hours is not None else "-"
        sized = g.train_images or g.eval_images
        images = (f"{g.train_images:,}", f"{g.eval_images:,}") if sized else ("-", "-")
        row = (g.task, g.backbone, str(g.cells), *images, rate, hours, g.source)
        table.add_row(*(escape(x) for x in row))
    stdout.print(table)
    known = [g.device_hours for g in groups if g.device_hours is not None]
    missing = len(groups) - len(known)
    if not known:
        stdout.print(
            f"estimated total: unknown, no throughput recorded for any of the {missing} groups; "
            "`bench plan --calibrate` measures it on this machine"
        )
        return
    total = f"{sum(known):.2f} device-hours" + (f" (+ {missing} groups not estimated)" if missing else "")
    stdout.print(f"estimated total: {total}; full fine-tuning throughput, an upper bound for frozen strategies")


def emit(text: str, output: Path | None) -> None:
    """A rendered document to `output` (folders created), or to stdout."""
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        stderr.print(f"wrote {output}")
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
    alpha: Annotated[float, typer.Option(help="Significance threshold of Welch's t-test.")] = 0.05,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
    all_settings: Annotated[
        bool, typer.Option("--all-settings", help="Show every swept setting, not only the one selected on validation.")
    ] = False,
) -> None:
    """Print the report of a results directory: per task, metric with CI, gain and significance, cost, ROI."""
    from harness.registry import default_registry
    from harness.report import ReportOptions, build_report

    registry = default_registry()
    if format not in registry.components["reporter"]:
        raise BenchError(f"--format: unknown format {format!r}; allowed: {', '.join(registry.names('reporter'))}")
    options = ReportOptions(
        metric, baseline, tuple(task or ()), tuple(backbone or ()), tuple(strategy or ()), sort, alpha, all_settings
    )
    emit(registry.create("reporter", format).render(build_report(results, options)), output)


def plot(
    results: Annotated[Path, typer.Argument(help="Results directory, e.g. results/quickstart.")] = Path(
        "results/quickstart"
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for the PNGs (default: RESULTS/plots).")
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="Strategy to measure gains against (default: the suite's).")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Metric to plot (default: each task's).")] = None,
) -> None:
    """Draw PNG figures: metric vs cost with the Pareto frontier, learning curves, a gain heatmap."""
    from harness.plots import write_plots
    from harness.report import ReportOptions, build_report

    built = build_report(results, ReportOptions(metric=metric, baseline=baseline))
    for path in write_plots(built, results, output or results / "plots"):
        stdout.print(str(path))


def compare(
    run_a: Annotated[Path, typer.Argument(help="The reference results directory.")],
    run_b: Annotated[Path, typer.Argument(help="The results directory compared with it.")],
    metric: Annotated[str | None, typer.Option(help="Metric to compare (default: each task's).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance threshold of Welch's t-test.")] = 0.05,
    format: Annotated[str, typer.Option("--format", "-f", help="markdown, csv or json.")] = "markdown",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Which cells changed beyond noise between two result directories (same statistics as the report)."""
    from harness.compare import FORMATS, compare_runs, render_comparison

    if format not in FORMATS:
        raise BenchError(f"--format: unknown format {format!r}; allowed: {', '.join(FORMATS)}")
    emit(render_comparison(compare_runs(run_a, run_b, metric=metric, alpha=alpha), format), output)


def plugins() -> None:
    """List every registered component and the package that provides it."""
    from harness.registry import default_registry

    registry = default_registry()
    table = Table(title="bench plugins", title_justify="left")
    for column in ("kind", "name", "provided by", "what"):
        table.add_column(column)
    for entry in registry.all():
        doc = (entry.cls.__doc__ or "").strip().splitlines()
        table.add_row(entry.kind, entry.name, entry.provider, doc[0] if doc else "")
    stdout.print(table)


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
    table = Table(title=f"published weights (cache: {torch.hub.get_dir()}/checkpoints)", title_justify="left")
    for column in ("backbone", "weights", "file", "cached", "what"):
        table.add_column(column)
    for backbone in chosen:
        for label, named in registry.create("backbone", backbone).named_weights().items():
            cached = "yes" if hub_path(named).is_file() else "no"
            table.add_row(backbone, label, named.filename, cached, named.description)
    stdout.print(table)


def _show_warning(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Warnings (e.g. a plugin that failed to load) as one plain line on stderr."""
    stderr.print(f"warning: {message}", markup=False, soft_wrap=True)


def main() -> None:
    warnings.showwarning = _show_warning
    create_app()()

"""`tensorboard`: TensorBoard event files, one folder per cell (the `tensorboard` extra).

`<results>/tensorboard/<cell key>/` (or the `log_dir` option) holds each cell's curves: train/loss,
train/lr and train/samples_per_second as training goes, train/epoch_loss and val/<metric> per
epoch, test/<metric> and cost/* when the cell ends, a text summary (status, reason, settings) and
its hyperparameters for TensorBoard's HParams tab. Open with `tensorboard --logdir <that folder>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_plugins.loggers.common import GuardedLogger, hyperparameters
from pydantic import Field

from harness import Logger, Options, hookimpl, install_hint

if TYPE_CHECKING:
    from harness import Cell, CellResult, RunSummary

MISSING = f'logger "tensorboard" needs TensorBoard: {install_hint("tensorboard")}'


class TensorBoardOptions(Options):
    log_dir: str | None = Field(
        None,
        description="folder of the event files, one subfolder per cell key (default: <results dir>/tensorboard); "
        "a relative path is relative to the working directory",
    )


@dataclass
class _Open:
    """One cell's writer and the last global step it saw."""

    writer: Any
    step: int = 0


class TensorBoard(GuardedLogger):
    """Each cell's learning curves, test metrics, costs and hyperparameters as TensorBoard event files."""

    name = "tensorboard"
    Options = TensorBoardOptions

    def __init__(self, options: Any = None, output: Path | None = None) -> None:
        super().__init__(options, output=output)
        self.open: dict[str, _Open] = {}

    def available(self) -> str | None:
        try:
            import torch.utils.tensorboard  # noqa: F401  (needs the tensorboard package)
        except ImportError:
            return MISSING
        return None

    @property
    def root(self) -> Path:
        log_dir = self.options.log_dir  # type: ignore[attr-defined]
        if log_dir is not None:
            return Path(log_dir).expanduser()
        return (self.output or Path.cwd()) / "tensorboard"

    def _writer(self, cell: Cell) -> _Open:
        if cell.key not in self.open:
            from torch.utils.tensorboard import SummaryWriter

            self.open[cell.key] = _Open(SummaryWriter(log_dir=str(self.root / cell.key)))
        return self.open[cell.key]

    @hookimpl
    def bench_cell_started(self, cell: Cell) -> None:
        with self.guard("opening the event file of a cell"):
            stale = self.open.pop(cell.key, None)  # the same cell again (a retry): start a new file
            if stale is not None:
                stale.writer.close()
            self._writer(cell)

    @hookimpl
    def bench_step(self, cell: Cell, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        with self.guard("logging a training step"):
            log = self._writer(cell)
            log.step = step
            log.writer.add_scalar("train/loss", loss, step)
            log.writer.add_scalar("train/lr", lr, step)
            log.writer.add_scalar("train/samples_per_second", samples_per_second, step)

    @hookimpl
    def bench_epoch_finished(self, cell: Cell, step: int, train_loss: float | None, val: dict[str, Any]) -> None:
        with self.guard("logging an epoch"):
            log = self._writer(cell)
            log.step = max(log.step, step)
            if train_loss is not None:
                log.writer.add_scalar("train/epoch_loss", train_loss, step)
            for metric, value in val.items():
                if value is not None:
                    log.writer.add_scalar(f"val/{metric}", value, step)

    @hookimpl
    def bench_cell_finished(self, cell: Cell, result: CellResult) -> None:
        with self.guard("logging the end of a cell"):
            log = self._writer(cell)  # a skipped cell had no events: its writer opens now
            del self.open[cell.key]
            try:
                self._finish(log, cell, result)
            finally:
                log.writer.close()

    def _finish(self, log: _Open, cell: Cell, result: CellResult) -> None:
        from torch.utils.tensorboard.summary import hparams

        writer, step = log.writer, log.step or result.cost.train_steps
        tested = {f"test/{metric}": value for metric, value in result.metrics.items() if value is not None}
        for tag, value in tested.items():
            writer.add_scalar(tag, value, step)
        cost = result.cost
        if result.status != "skipped":
            writer.add_scalar("cost/train_seconds", cost.train_seconds, step)
            writer.add_scalar("cost/wall_seconds", cost.wall_seconds, step)
            writer.add_scalar("cost/peak_memory_mib", cost.peak_memory_bytes / 2**20, step)
            writer.add_scalar("cost/trainable_params", cost.trainable_params, step)
            writer.add_scalar("cost/total_params", cost.total_params, step)
        writer.add_text("summary", _summary(cell, result), step)
        # the HParams tab: one row per cell, its test metrics (the scalars above) as columns
        values = {
            "task": cell.task,
            "setting": cell.setting,
            "status": result.status,
            **hyperparameters(cell.settings.as_json()),
        }
        for summary in hparams(values, tested):
            writer.file_writer.add_summary(summary, step)

    @hookimpl
    def bench_run_finished(self, summary: RunSummary) -> None:
        self.close()
        self.report_errors()

    def close(self) -> None:
        """Close the writers of cells that never finished (the run stopped)."""
        with self.guard("closing the event files"):
            while self.open:
                _, log = self.open.popitem()
                log.writer.close()


def _summary(cell: Cell, result: CellResult) -> str:
    """The cell's status, reason and settings as TensorBoard text (markdown)."""
    lines = [f"**{cell.label}** (`{cell.key}`)", "", f"status: **{result.status}**"]
    if result.reason:
        lines.append(f"reason: {result.reason}")
    settings = json.dumps(cell.settings.as_json(), indent=2, sort_keys=True, default=str)
    lines += ["", "settings:", "", *(f"    {line}" for line in settings.splitlines())]
    return "\n".join(lines)


@hookimpl
def bench_loggers() -> list[type[Logger]]:
    return [TensorBoard]

"""`mlflow`: one MLflow run per cell in a tracking store (the `mlflow` extra).

By default the store is a local one in the results directory, `<results>/mlruns` (MLflow's file
store, which `mlflow-skinny` writes without a database library or a server); `tracking_uri`
names another (`sqlite:///...`, `http://host:5000`, `databricks`). Nothing here starts a server.
Each run is named by the cell label and tagged with its key, task, backbone, strategy, setting,
seed and status; its params are the cell's flattened settings; its metrics train_loss, lr and
samples_per_second per step, val_<metric> per epoch, test_<metric> and cost_* at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_plugins.loggers.common import GuardedLogger, flatten
from pydantic import Field

from harness import Logger, Options, hookimpl, install_hint

if TYPE_CHECKING:
    from harness import Cell, CellResult, RunSummary, Suite

MISSING = f'logger "mlflow" needs MLflow: {install_hint("mlflow")}'
#: MLflow's run status by the cell's; a skipped cell did not run, yet nothing went wrong
RUN_STATUS = {"ok": "FINISHED", "failed": "FAILED", "diverged": "FAILED", "skipped": "FINISHED"}
#: the shortest param value limit of MLflow's stores (500 before 2.x raised it); longer values are cut
PARAM_LENGTH = 500
KEY_LENGTH = 250
BATCH = 100


class MLflowOptions(Options):
    tracking_uri: str | None = Field(
        None,
        description="where runs go (file:, sqlite:///, http(s)://, databricks); "
        "default: a local file store, <results dir>/mlruns",
    )
    experiment: str | None = Field(None, description="the MLflow experiment; default: the suite's name")


@dataclass
class _Open:
    run_id: str
    step: int = 0


class MLflow(GuardedLogger):
    """Each cell as an MLflow run: settings as params, learning curves and test metrics as metrics."""

    name = "mlflow"
    Options = MLflowOptions

    def __init__(self, options: Any = None, output: Path | None = None) -> None:
        super().__init__(options, output=output)
        self.client: Any = None
        self.experiment_id: str | None = None
        self.suite = "bench"
        self.open: dict[str, _Open] = {}

    def available(self) -> str | None:
        try:
            from mlflow import MlflowClient  # noqa: F401
        except ImportError:
            return MISSING
        return None

    @property
    def tracking_uri(self) -> str:
        uri: str | None = self.options.tracking_uri  # type: ignore[attr-defined]
        if uri is None:
            return ((self.output or Path.cwd()).resolve() / "mlruns").as_uri()
        return uri

    def _connect(self) -> Any:
        """The client and the experiment, made on first use (not when the suite is checked)."""
        if self.client is None:
            from mlflow import MlflowClient

            uri = self.tracking_uri
            if uri.startswith("file:"):
                # MLflow 3 keeps its file store behind this opt-in ("maintenance mode"); it is the store
                # mlflow-skinny writes without a database library. Set only when unset.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.client = MlflowClient(tracking_uri=uri)
        if self.experiment_id is None:
            self.experiment_id = self._experiment(self.options.experiment or self.suite)  # type: ignore[attr-defined]
        return self.client

    def _experiment(self, name: str) -> str:
        client = self.client
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(client.create_experiment(name))
            except Exception:  # another run created it meanwhile
                found = client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _run(self, cell: Cell) -> _Open:
        if cell.key not in self.open:
            client = self._connect()
            tags = {
                "cell_key": cell.key,
                "suite": self.suite,
                "task": cell.task,
                "task_kind": cell.settings.task.kind,
                "backbone": cell.backbone,
                "strategy": cell.strategy,
                "setting": cell.setting,
                "seed": str(cell.seed),
                "pretraining": str(cell.is_pretraining).lower(),
                "status": "running",
            }
            run = client.create_run(self.experiment_id, run_name=cell.label, tags=tags)
            log = self.open[cell.key] = _Open(run.info.run_id)
            from mlflow.entities import Param

            params = [Param(key[:KEY_LENGTH], _cut(value)) for key, value in flatten(cell.settings.as_json()).items()]
            for start in range(0, len(params), BATCH):
                client.log_batch(log.run_id, params=params[start : start + BATCH])
        return self.open[cell.key]

    def _metrics(self, log: _Open, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, step) for key, value in values.items() if value is not None]
        if metrics:
            self.client.log_batch(log.run_id, metrics=metrics)

    @hookimpl
    def bench_run_started(self, suite: Suite) -> None:
        self.suite = suite.name

    @hookimpl
    def bench_cell_started(self, cell: Cell) -> None:
        with self.guard("starting the MLflow run of a cell"):
            stale = self.open.pop(cell.key, None)  # the same cell again (a retry): a new run
            if stale is not None:
                self.client.set_terminated(stale.run_id, "KILLED")
            self._run(cell)

    @hookimpl
    def bench_step(self, cell: Cell, step: int, loss: float, lr: float, samples_per_second: float) -> None:
        with self.guard("logging a training step"):
            log = self._run(cell)
            log.step = step
            self._metrics(log, {"train_loss": loss, "lr": lr, "samples_per_second": samples_per_second}, step)

    @hookimpl
    def bench_epoch_finished(
        self, cell: Cell, epoch: int, step: int, train_loss: float | None, val: dict[str, Any]
    ) -> None:
        with self.guard("logging an epoch"):
            log = self._run(cell)
            log.step = max(log.step, step)
            values = {"epoch": epoch + 1, "epoch_loss": train_loss, **{f"val_{k}": v for k, v in val.items()}}
            self._metrics(log, values, step)

    @hookimpl
    def bench_cell_finished(self, cell: Cell, result: CellResult) -> None:
        with self.guard("ending the MLflow run of a cell"):
            log = self._run(cell)  # a skipped cell had no events: its run starts now
            del self.open[cell.key]
            try:
                values: dict[str, Any] = {f"test_{k}": v for k, v in result.metrics.items()}
                if result.status != "skipped":
                    cost = result.cost
                    values.update(
                        cost_train_seconds=cost.train_seconds,
                        cost_wall_seconds=cost.wall_seconds,
                        cost_peak_memory_mib=cost.peak_memory_bytes / 2**20,
                        cost_trainable_params=cost.trainable_params,
                        cost_total_params=cost.total_params,
                    )
                self._metrics(log, values, log.step or result.cost.train_steps)
                self.client.set_tag(log.run_id, "status", result.status)
                if result.reason:
                    self.client.set_tag(log.run_id, "reason", _cut(result.reason, 5000))
            finally:
                self.client.set_terminated(log.run_id, RUN_STATUS.get(result.status, "FINISHED"))

    @hookimpl
    def bench_run_finished(self, summary: RunSummary) -> None:
        self.close()
        self.report_errors()

    def close(self) -> None:
        """End the runs of cells that never finished (the run stopped) as KILLED."""
        with self.guard("ending unfinished MLflow runs"):
            while self.open:
                _, log = self.open.popitem()
                self.client.set_terminated(log.run_id, "KILLED")


def _cut(value: str, limit: int = PARAM_LENGTH) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


@hookimpl
def bench_loggers() -> list[type[Logger]]:
    return [MLflow]

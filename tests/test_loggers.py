"""The built-in loggers: TensorBoard event files and MLflow runs, read back with each tool's own reader."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness import ParamGroup, Strategy, TaskModel, hookimpl
from harness.cli import create_app
from harness.driver import run_suite
from harness.extras import install_hint
from harness.registry import Registry
from harness.result import CellResult, RunSummary
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite, to_toml

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

from bench_plugins.loggers.mlflow_logger import MLflow
from bench_plugins.loggers.tensorboard_logger import TensorBoard
from mlflow import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

EPOCHS = 2


class NeverHere(Strategy):
    """Refuses every task: its cells are skipped, so a logger sees only their end."""

    name = "never_here"

    def check(self, task_kind: str) -> str | None:
        return "never runs here"

    def prepare(self, model: TaskModel) -> list[ParamGroup]:
        return [ParamGroup(params=list(model.parameters()), name="all")]


class Plugin:
    @hookimpl
    def bench_strategies(self) -> list[type[Strategy]]:
        return [NeverHere]


def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    # one step event per optimizer step, so a short run still draws a loss curve
    monkeypatch.setattr("harness.training.STEP_EVENT_INTERVAL", 0.0)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    _quiet(monkeypatch)


def _suite(output: Path, **overrides: Any) -> dict[str, Any]:
    data = tiny_suite(
        output,
        strategies=[{"name": "full"}, {"name": "linear_probe"}, {"name": "never_here"}],
        training={"epochs": EPOCHS, "batch_size": 8, "optimizer": "adamw", "lr": 1e-3, "threads": 2, "amp": False},
        **overrides,
    )
    data["tasks"] = [{"name": "cls", "kind": "classification", "dataset": tiny_dataset(train=16, val=8, test=8)}]
    return data


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunSummary, dict[str, CellResult]]:
    """Two strategies that train and one that is skipped, logged by both loggers."""
    mp = pytest.MonkeyPatch()
    _quiet(mp)
    try:
        registry = Registry(plugins=[(Plugin(), "test")], entry_points=False)
        data = _suite(tmp_path_factory.mktemp("loggers") / "out", loggers=["tensorboard", "mlflow"])
        summary = run_suite(parse_suite(data, registry=registry), registry)
    finally:
        mp.undo()
    results = {r.strategy: r for r in Store(summary.output).results()}
    assert {s: r.status for s, r in results.items()} == {"full": "ok", "linear_probe": "ok", "never_here": "skipped"}
    return summary, results


def _scalars(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_has_each_cells_curves_test_metrics_and_summary(logged) -> None:
    summary, results = logged
    root = summary.output / "tensorboard"
    assert sorted(p.name for p in root.iterdir()) == sorted(r.key for r in results.values())
    full = results["full"]
    events = _scalars(root / full.key)
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/samples_per_second", "train/epoch_loss", "val/top1"} <= scalars
    loss = events.Scalars("train/loss")
    steps_per_epoch = 2  # 16 images in batches of 8
    assert [e.step for e in loss] == list(range(1, EPOCHS * steps_per_epoch + 1))
    val = events.Scalars("val/top1")
    assert [e.step for e in val] == [p["step"] for p in full.curve]
    assert [e.value for e in val] == pytest.approx([p["val"]["top1"] for p in full.curve])
    assert [e.value for e in events.Scalars("train/epoch_loss")] == pytest.approx([p["train_loss"] for p in full.curve])
    (test,) = events.Scalars("test/top1")
    assert test.value == pytest.approx(full.metrics["top1"]) and test.step == full.cost.train_steps
    (params,) = events.Scalars("cost/trainable_params")
    assert params.value == full.cost.trainable_params
    text = events.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "status: **ok**" in text and '"strategy"' in text
    # the skipped cell: no curve, its summary with the reason
    skipped = _scalars(root / results["never_here"].key)
    assert "train/loss" not in skipped.Tags()["scalars"]
    text = skipped.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "status: **skipped**" in text and "never runs here" in text


def test_mlflow_has_one_run_per_cell_with_curves_metrics_tags_and_status(logged) -> None:
    summary, results = logged
    client = MlflowClient(tracking_uri=(summary.output / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = {run.data.tags["strategy"]: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"full", "linear_probe", "never_here"}
    for strategy, result in results.items():
        run = runs[strategy]
        tags = run.data.tags
        assert run.info.run_name == result.label
        assert tags["cell_key"] == result.key and tags["status"] == result.status
        assert (tags["task"], tags["backbone"], tags["seed"], tags["setting"]) == ("cls", "resnet18", "0", "")
        assert run.data.params["training.epochs"] == str(EPOCHS)
        assert run.data.params["strategy.name"] == strategy
    assert {s: r.info.status for s, r in runs.items()} == {
        "full": "FINISHED",
        "linear_probe": "FINISHED",
        "never_here": "FINISHED",
    }
    assert runs["never_here"].data.tags["reason"] == "never runs here"
    assert runs["never_here"].data.metrics == {}
    full, run = results["full"], runs["full"]
    val = client.get_metric_history(run.info.run_id, "val_top1")
    assert [m.step for m in val] == [p["step"] for p in full.curve]
    assert [m.value for m in val] == pytest.approx([p["val"]["top1"] for p in full.curve])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == EPOCHS * 2
    assert run.data.metrics["test_top1"] == pytest.approx(full.metrics["top1"])
    assert run.data.metrics["cost_trainable_params"] == full.cost.trainable_params


class Broken:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")


def test_a_failing_logger_fails_no_cell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("torch.utils.tensorboard.SummaryWriter", Broken)
    registry = Registry(entry_points=False)
    data = _suite(tmp_path / "out", loggers=["tensorboard"])
    data["strategies"] = [{"name": "linear_probe"}]
    data["training"]["epochs"] = 1
    with pytest.warns(RuntimeWarning) as caught:
        summary = run_suite(parse_suite(data, registry=registry), registry)
    assert [r.status for r in Store(summary.output).results()] == ["ok"]
    messages = [str(w.message) for w in caught if "tensorboard" in str(w.message)]
    assert messages[0].startswith('logger "tensorboard" failed while opening the event file of a cell: ')
    assert "No space left on device" in messages[0] and "\n" not in messages[0]
    assert len(messages) == 2 and "more failures after the first" in messages[1]


# --- the command line -------------------------------------------------------------------------

cli = CliRunner()


@pytest.fixture
def app():
    return create_app()


def _file(tmp_path: Path, **overrides: Any) -> Path:
    data = _suite(tmp_path / "out", **overrides)
    data["strategies"] = [{"name": "linear_probe"}]
    data["training"]["epochs"] = 1
    path = tmp_path / "suite.toml"
    path.write_text(to_toml(data))
    return path


def test_the_logger_option_adds_a_logger(tmp_path: Path, app) -> None:
    result = cli.invoke(app, ["run", str(_file(tmp_path)), "--quiet", "--logger", "tensorboard"])
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "out" / "tensorboard").iterdir()
    assert "val/top1" in _scalars(folder).Tags()["scalars"]


def _error(result: Any) -> str:
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


def test_unknown_loggers_and_options_are_refused(tmp_path: Path, app) -> None:
    unknown = _error(cli.invoke(app, ["run", str(_file(tmp_path)), "--logger", "wandb"]))
    assert "--logger: loggers[0].name: unknown logger 'wandb'; allowed: " in unknown and "tensorboard" in unknown
    in_file = _error(cli.invoke(app, ["run", str(_file(tmp_path, loggers=["wandb"]))]))
    assert "loggers[0].name: unknown logger 'wandb'" in in_file
    option = _file(tmp_path, loggers=[{"name": "mlflow", "options": {"experimnt": "x"}}])
    assert "loggers[0].options.experimnt" in _error(cli.invoke(app, ["plan", str(option)]))
    assert not (tmp_path / "out").exists()


def test_a_missing_extra_is_named_when_the_suite_loads(tmp_path: Path, app, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    line = _error(cli.invoke(app, ["run", str(_file(tmp_path, loggers=["mlflow"]))]))
    assert line.endswith(f'loggers[0].name: logger "mlflow" needs MLflow: {install_hint("mlflow")}')
    monkeypatch.setattr(TensorBoard, "available", lambda self: 'logger "tensorboard" needs TensorBoard: ...')
    line = _error(cli.invoke(app, ["run", str(_file(tmp_path)), "--logger", "tensorboard"]))
    assert line.startswith("error: --logger: loggers[0].name: ") and "needs TensorBoard" in line
    assert MLflow(None).available() is not None

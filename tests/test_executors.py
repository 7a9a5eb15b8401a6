"""Executors: the same suite (a pretraining stage, a distillation teacher) gives the same statuses and
metrics under `sequential`, `processes` and `ray`; a killed worker fails its cell only; two
concurrent `bench run` train each cell once; stale claims are taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.claims import Claims
from harness.driver import run_suite
from harness.registry import Registry
from harness.result import RunSummary
from harness.store import Store, planned_results
from harness.suite import parse_suite
from tests import executor_plugins
from tests.conftest import tiny_dataset, tiny_suite, to_toml

ROOT = Path(__file__).resolve().parents[1]


def _suite(output: Path, executor: Any = "sequential", **overrides: Any) -> dict[str, Any]:
    """Classification and segmentation from a pretrained backbone; `distill` learns from `full`."""
    data = tiny_suite(
        output,
        executor=executor,
        pretrain=[{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(shapes=["star", "hexagon"], seed=5)}],
        backbones=[{"name": "resnet18", "weights": "pretrain:src"}],
        strategies=[
            {"name": "scratch"},
            {"name": "full"},
            {"name": "distill", "options": {"teacher_backbone": "resnet18", "teacher_strategy": "full"}},
        ],
        **overrides,
    )
    data["training"]["threads"] = 1  # what each worker gets below: equal arithmetic, equal metrics
    data["tasks"] = [t for t in data["tasks"] if t["kind"] != "detection"]
    return data


def _outcomes(output: Path) -> dict[tuple[str, str], tuple[str, dict[str, float]]]:
    return {(r.task, r.strategy): (r.status, r.metrics) for r in planned_results(output)}


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    output = tmp_path_factory.mktemp("sequential") / "out"
    registry = Registry(entry_points=False)
    summary = run_suite(parse_suite(_suite(output), registry=registry), registry)
    return output, summary


def test_sequential_runs_the_pretraining_stage_and_the_teacher_before_their_dependents(sequential_run) -> None:
    output, summary = sequential_run
    assert summary.statuses == {"ok": 6} and summary.pretrained == 1
    results = planned_results(output)
    finished = {(r.task, r.strategy): r.finished_at for r in results}
    for task in ("cls", "seg"):
        started = next(r.started_at for r in results if (r.task, r.strategy) == (task, "distill"))
        assert finished[task, "full"] <= started  # the teacher finished before its student started
    (stage,) = Store(output).pretrain_dir.glob("*.json")
    assert json.loads(stage.read_text())["finished_at"] <= min(r.started_at for r in results if r.strategy != "scratch")


def test_processes_give_the_sequential_statuses_and_metrics(tmp_path: Path, sequential_run) -> None:
    output = tmp_path / "out"
    registry = Registry(entry_points=False)
    executor = {"name": "processes", "options": {"slots": 2, "threads": 1}}
    summary = run_suite(parse_suite(_suite(output, executor), registry=registry), registry)
    assert summary.statuses == {"ok": 6} and summary.pretrained == 1
    assert set(summary.per_slot) == {0, 1}, "both workers ran cells"
    assert summary.executor == "processes: 2 workers (cpu, 1 thread each)"
    slots = f"slot 0: {summary.per_slot[0]}, slot 1: {summary.per_slot[1]}"
    assert summary.describe().splitlines() == [
        "6 cells: 0 already done, this run: 6 ok",
        f"processes: 2 workers (cpu, 1 thread each) ran 6 cells ({slots}); 1 pretraining stage",
    ]
    assert _outcomes(output) == _outcomes(sequential_run[0])
    pids = {r.provenance["pid"] for r in planned_results(output)}
    assert os.getpid() not in pids and len(pids) == 2


def test_a_killed_worker_fails_its_cell_and_the_suite_goes_on(tmp_path: Path) -> None:
    output = tmp_path / "out"
    registry = Registry(plugins=[(executor_plugins, "test-plugins")], entry_points=False)
    data = tiny_suite(
        output,
        executor={"name": "processes", "options": {"slots": 2, "threads": 1}},
        strategies=[{"name": "dies"}, {"name": "full"}, {"name": "linear_probe"}],
        seeds=[0, 1],
    )
    data["tasks"] = data["tasks"][:1]
    summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 4, "failed": 2}
    for result in planned_results(output):
        if result.strategy == "dies":
            assert result.status == "failed"
            assert result.reason is not None and "killed by SIGKILL" in result.reason
        else:
            assert result.status == "ok"
    assert not list(Store(output).claims.directory.glob("*.json")), "the dead workers' claims are cleared"


def test_ray_with_fake_gpus_gives_the_sequential_statuses_and_metrics(tmp_path: Path, sequential_run) -> None:
    pytest.importorskip("ray")
    output = tmp_path / "out"
    registry = Registry(entry_points=False)
    # a local Ray on loopback that believes it has two GPUs: each cell asks for one, so two run at a time
    executor = {"name": "ray", "options": {"init": {"num_cpus": 2, "num_gpus": 2}}}
    summary = run_suite(parse_suite(_suite(output, executor), registry=registry), registry)
    assert summary.executor == "ray: 2 cells at a time (1 GPU each)"
    assert summary.statuses == {"ok": 6} and summary.pretrained == 1
    assert _outcomes(output) == _outcomes(sequential_run[0])
    assert os.getpid() not in {r.provenance["pid"] for r in planned_results(output)}


def test_two_concurrent_runs_train_each_cell_once(tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "counted"}], seeds=list(range(6)))
    data["tasks"] = data["tasks"][:1]
    data["training"]["threads"] = 1
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    env = {
        **os.environ,
        "BENCH_PLUGINS": "tests.executor_plugins",
        "BENCH_TEST_STARTS": str(starts),
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "harness", "run", str(suite), "--quiet"]
    runs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errors
    assert len(starts.read_text().splitlines()) == 6, "every cell trained exactly once"
    results = planned_results(tmp_path / "out")
    assert [r.status for r in results] == ["ok"] * 6
    json.loads((tmp_path / "out" / "manifest.json").read_text())  # still valid JSON
    assert not list((tmp_path / "out" / "claims").glob("*"))


def test_a_stale_claim_is_taken_over(tmp_path: Path, registry: Registry) -> None:
    output = tmp_path / "out"
    data = tiny_suite(output, strategies=[{"name": "linear_probe"}])
    data["tasks"] = data["tasks"][:1]
    suite = parse_suite(data, registry=registry)
    from harness.grid import plan_cells

    (cell,) = plan_cells(suite, registry)
    dead = subprocess.Popen(["true"])
    dead.wait()
    claims = Store(output).claims
    claims.directory.mkdir(parents=True)
    claims.path(cell.key).write_text(json.dumps({"host": os.uname().nodename, "pid": dead.pid, "token": "x"}))
    summary = run_suite(suite, registry)
    assert summary.statuses == {"ok": 1} and summary.elsewhere == 0
    assert claims.holder(cell.key) is None


def test_claims_are_exclusive_and_judged_by_owner_and_heartbeat(tmp_path: Path) -> None:
    claims = Claims(tmp_path, stale_after=60)
    mine = claims.acquire("k")
    assert mine is not None and claims.acquire("k") is None  # held by a live process: this one
    holder = claims.holder("k")
    assert holder is not None and holder["pid"] == os.getpid() and claims.stale_reason(holder) is None
    claims.release(mine)
    assert claims.holder("k") is None
    # another host's claim: its owner cannot be checked, only its heartbeat
    claims.path("k").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "t"}))
    assert claims.acquire("k") is None
    os.utime(claims.path("k"), (0, 0))  # no heartbeat since 1970
    holder = claims.holder("k")
    assert holder is not None and "no heartbeat" in str(claims.stale_reason(holder))
    taken = claims.acquire("k")
    assert taken is not None and claims.owns(taken)
    assert claims.beat(taken)
    claims.path("k").write_text(json.dumps({"host": "elsewhere", "pid": 1, "token": "other"}))
    assert not claims.beat(taken), "a claim taken over is not ours any more"


def test_an_unknown_executor_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import create_app

    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(tiny_suite(tmp_path / "out")))
    result = CliRunner().invoke(create_app(), ["run", str(suite), "--executor", "slurm"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --executor: unknown executor 'slurm'; allowed:")
    assert not (tmp_path / "out").exists()


def test_executor_options_are_validated_with_the_suite(tmp_path: Path, registry: Registry) -> None:
    from harness.errors import SuiteError

    data = tiny_suite(tmp_path / "out", executor={"name": "processes", "options": {"slots": 0}})
    with pytest.raises(SuiteError, match=r"executor\.options\.slots: Input should be greater than or equal to 1"):
        parse_suite(data, "s.toml", registry)

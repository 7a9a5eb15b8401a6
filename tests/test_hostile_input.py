"""Hostile input: each case is refused with one line naming the file, the key and what is allowed
(exit 2, no traceback), or, for results on disk, skipped with a note and recomputed by `bench run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from harness.driver import run_suite
from harness.errors import SuiteError
from harness.formatting import MAX_MESSAGE, clip_message
from harness.grid import plan_cells
from harness.registry import Registry
from harness.result import CellResult, Cost
from harness.store import Store, read_planned
from harness.suite import parse_suite
from tests.conftest import tiny_dataset, tiny_suite, to_toml

runner = CliRunner()
app = create_app()


def _data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    overrides.setdefault("strategies", [{"name": "linear_probe"}])
    data = tiny_suite(tmp_path / "out")
    data.pop("baseline")
    data.update(overrides)
    data["tasks"] = data["tasks"][:1]
    data["training"]["max_steps"] = 1
    return data


def _write(tmp_path: Path, data: dict[str, Any] | str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else to_toml(data))
    return path


def _refuses(args: list[str], *expected: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for part in expected:
        assert part in lines[0], lines[0]
    return lines[0]


# --- devices -------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cuda:²", "cuda:٣", "cuda:\uff11"])
def test_unicode_digits_in_a_device_are_refused_in_the_file_on_the_command_line_and_in_set(
    tmp_path: Path, device: str
) -> None:
    path = _write(tmp_path, _data(tmp_path, device=device))
    _refuses(["plan", str(path)], f"{path}: device:", "allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")
    good = _write(tmp_path, _data(tmp_path), "good.toml")
    _refuses(["plan", str(good), "--device", device], "device:", "'cuda:N'")
    _refuses(["plan", str(good), "--set", f"device={device}"], "device:", "'cuda:N'")


# --- paths ---------------------------------------------------------------------------------------


def test_an_output_that_is_a_dangling_symlink_is_refused_by_plan(tmp_path: Path) -> None:
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    path = _write(tmp_path, _data(tmp_path, output=str(link)))
    _refuses(["plan", str(path)], f"{path}: output:", "symbolic link to nothing")
    good = _write(tmp_path, _data(tmp_path), "good.toml")
    _refuses(["run", str(good), "--output", str(link)], "symbolic link to nothing")


def test_an_output_under_an_unknown_users_home_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _data(tmp_path, output="~nosuchuser_bench/x"))
    _refuses(["plan", str(path)], f"{path}: output:", "no such user's home directory")


def test_a_suite_path_with_a_trailing_slash_is_not_read_as_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _data(tmp_path))
    assert runner.invoke(app, ["plan", str(path)]).exit_code == 0
    _refuses(["plan", f"{path}/"], f"{path}/: a trailing '/' names a folder", "allowed: a suite file")


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused_anywhere_in_a_suite(tmp_path: Path, value: str, registry: Registry) -> None:
    text = to_toml(_data(tmp_path)).replace('name = "cls"', f'name = "cls"\noptions = {{ aspect_ratios = [{value}] }}')
    path = _write(tmp_path, text)
    line = _refuses(["plan", str(path)], f"{path}: tasks[0].options.aspect_ratios[0]:", "allowed: finite numbers")
    assert "not a finite number" in line
    with pytest.raises(SuiteError, match=r"training\.grad_clip: inf is not a finite number"):
        parse_suite({**_data(tmp_path), "training": {"grad_clip": float("inf")}}, "s.toml", registry)


@pytest.mark.parametrize("tflops", ["inf", "1e400", "nan", "0", "-1"])
def test_plan_refuses_a_throughput_that_is_not_a_finite_positive_number(tmp_path: Path, tflops: str) -> None:
    path = _write(tmp_path, _data(tmp_path))
    _refuses(["plan", str(path), "--tflops", tflops], "--tflops:", "not a throughput")
    assert runner.invoke(app, ["plan", str(path), "--tflops", "100"]).exit_code == 0


def test_an_integer_of_5000_digits_is_refused_in_the_file_and_in_set(tmp_path: Path) -> None:
    huge = "9" * 5000
    text = to_toml(_data(tmp_path)).replace("epochs = 1", f"epochs = {huge}")
    path = _write(tmp_path, text)
    line = _refuses(["plan", str(path)], f"{path}: line ", "more than 4300 digits", "allowed: integers of at most")
    assert int(line.split("line ")[1].split(":")[0]) == text.splitlines().index(f"epochs = {huge}") + 1
    good = _write(tmp_path, _data(tmp_path), "good.toml")
    _refuses(["plan", str(good), "--set", f"training.epochs={huge}"], "--set training.epochs=", "4300 digits")


def test_an_integer_too_long_to_write_in_an_error_does_not_crash_it(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path)
    data["training"]["epochs"] = -(10**5000)  # built in memory: past the digits Python writes
    with pytest.raises(SuiteError, match=r"training\.epochs: .*got an integer of more than 4300 digits"):
        parse_suite(data, "s.toml", registry)


def test_a_dataset_seed_below_zero_is_refused_before_any_cell_runs(tmp_path: Path) -> None:
    data = _data(tmp_path)
    data["tasks"][0]["dataset"] = tiny_dataset(seed=-1)
    path = _write(tmp_path, data)
    _refuses(["plan", str(path)], f"{path}: tasks[0].dataset.options.seed:", "greater than or equal to 0")


# --- long values ---------------------------------------------------------------------------------


def test_a_100000_character_pattern_is_refused_in_one_short_line(tmp_path: Path) -> None:
    pattern = "(" * 100_000 + ")" * 100_000
    data = _data(tmp_path, strategies=[{"name": "lora", "options": {"pattern": pattern}}])
    line = _refuses(["plan", str(_write(tmp_path, data))], "strategies[0].options.pattern")
    assert len(line) < MAX_MESSAGE + 100


def test_an_error_line_never_repeats_a_huge_value_in_full(tmp_path: Path) -> None:
    name = "x" * 100_000
    line = _refuses(["plan", str(tmp_path / name / "s.toml")], "s.toml: cannot read the suite file: File name too long")
    assert len(line) < MAX_MESSAGE + 100 and "characters left out" in line
    assert clip_message("short") == "short"
    clipped = clip_message("a" * 5000 + "END")
    assert clipped.startswith("aaa") and clipped.endswith("END") and "4004 characters left out" in clipped


# --- results on disk -----------------------------------------------------------------------------


def _result(key: str, strategy: str = "full", **fields: Any) -> CellResult:
    settings = {"task": {"kind": "classification", "metric": "top1"}}
    return CellResult(
        key, "ok", "cls", "resnet18", strategy, 0, settings, metrics={"top1": 0.5},  # type: ignore[arg-type]
        cost=Cost(train_seconds=2.0, trainable_params=10, total_params=20), **fields,
    )  # fmt: skip


@pytest.mark.parametrize("curve", [[None], [3], [{"epoch": 1, "val": None}], [{"epoch": 1, "val": [0.5]}]])
def test_a_cell_with_a_broken_curve_is_skipped_by_report_with_a_note(tmp_path: Path, curve: list[Any]) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    store.cell_path("bbb").write_text(json.dumps({**_result("bbb", strategy="scratch").to_json(), "curve": curve}))
    result = runner.invoke(app, ["report", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "bbb.json: corrupt: curve[0]" in result.stderr
    assert len(result.stdout.splitlines()) == 2  # the header and the good cell
    assert not store.is_done("bbb")


def test_run_moves_a_cell_with_a_null_curve_aside_and_reruns_it(tmp_path: Path, registry: Registry) -> None:
    data = _data(tmp_path)
    (cell,) = plan_cells(parse_suite(data, registry=registry), registry)
    store = Store(tmp_path / "out")
    store.cells_dir.mkdir(parents=True)
    store.cell_path(cell.key).write_text(json.dumps({**_result(cell.key).to_json(), "curve": [None]}))
    summary = run_suite(parse_suite(data, registry=registry), registry)
    assert summary.statuses == {"ok": 1}
    assert (store.cells_dir / "corrupt" / f"{cell.key}.json").is_file()
    rerun = store.load(cell.key)
    assert rerun is not None and all(isinstance(entry, dict) for entry in rerun.curve) and rerun.curve


def test_a_manifest_listing_missing_keys_does_not_hide_the_cells_on_disk(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    store.save(_result("bbb", strategy="scratch"))
    store.write_manifest({"runs": [{"cells": ["gone1", "gone2"], "labels": {}}]})
    assert sorted(r.key for r in read_planned(tmp_path).results) == ["aaa", "bbb"]
    result = runner.invoke(app, ["report", str(tmp_path), "--format", "csv"])
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 3, result.output


@pytest.mark.parametrize("name", ["cells/a.json", "cells/sub/a.md", "cells/../cells/b.json"])
def test_report_refuses_to_write_into_the_cells_folder(tmp_path: Path, name: str) -> None:
    store = Store(tmp_path)
    store.save(_result("aaa"))
    target = tmp_path / name
    _refuses(["report", str(tmp_path), "--format", "json", "--output", str(target)], "--output:", "cells folder")
    assert not target.exists()
    assert runner.invoke(app, ["report", str(tmp_path), "--output", str(tmp_path / "report.md")]).exit_code == 0


# --- SIGTERM -------------------------------------------------------------------------------------


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_sigterm_stops_a_run_like_ctrl_c_keeping_finished_cells_and_releasing_claims(
    tmp_path: Path, executor: str
) -> None:
    """A real process: the first cell finishes, SIGTERM arrives during the next; exit 143, no claim left,
    under the default executor and under the quickstart's (worker processes holding claims)."""
    data = _data(tmp_path, seeds=[0, 1, 2, 3, 4, 5])
    data["executor"] = executor
    data["training"]["max_steps"] = 3
    path = _write(tmp_path, data)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", str(path), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list((out / "cells").glob("*.json")):
        time.sleep(0.1)
    assert list((out / "cells").glob("*.json")), "no cell finished in time"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "terminated (SIGTERM); finished cells are kept" in stderr and "Traceback" not in stderr
    done = [p for p in (out / "cells").glob("*.json")]
    assert done and len(done) < 6
    assert all(json.loads(p.read_text())["status"] == "ok" for p in done)
    assert not [p for p in out.rglob("*") if "claim" in p.name and p.is_file()], list(out.rglob("*"))

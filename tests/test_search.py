"""Searches: trials are cells proposed by Optuna, the chosen setting runs on every suite seed, a
killed search resumes with the same proposals, and bad search input is refused with its key."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.report import build_report
from harness.search import plan_searches
from harness.search_summary import read_summaries
from harness.suite import parse_suite
from harness.tuning_plot import best_so_far, tuning_curves
from tests.conftest import tiny_suite, to_toml

SPACE = {
    "training": {
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
    }
}


def _data(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data = tiny_suite(tmp_path / "out", seeds=[0, 1], strategies=[{"name": "linear_probe"}, {"name": "full"}])
    data["tasks"] = data["tasks"][:1]
    data["baseline"] = "linear_probe"
    data["search"] = {"method": "random", "trials": 6, "space": SPACE}
    data["strategies"][1]["search"] = {"method": "tpe"}
    data.update(overrides)
    return data


def _write(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "suite.toml"
    path.write_text(to_toml(data))
    return path


def _bench(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(suite: Path, *extra: str) -> str:
    process = _bench("run", str(suite), "--quiet", *extra)
    _, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr
    return stderr


def _trials(out: Path) -> dict[str, list[tuple[int, dict[str, Any], float | None]]]:
    return {s["strategy"]: [(t["number"], t["params"], t["value"]) for t in s["trials"]] for s in read_summaries(out)}


# ------------------------------------------------------------------ the suite's search tables


def test_dotted_keys_read_back_into_paths_and_strategies_merge_the_default(tmp_path: Path, registry) -> None:
    data = _data(tmp_path)
    data["strategies"][1]["search"] = {"method": "tpe", "trials": 4, "space": {"options": {}}}
    data["strategies"].append({"name": "scratch", "search": False})
    suite = parse_suite(data, "s.toml", registry)
    probe, full, scratch = (suite.search_for(s) for s in suite.strategies)
    assert probe is not None and full is not None and scratch is None
    assert list(probe.space) == ["training.lr", "training.weight_decay"]
    assert (probe.method, probe.budget(), full.method, full.budget()) == ("random", 6, "tpe", 4)
    assert probe.seed == full.seed == 1000  # not one of the suite's seeds: the final runs are independent
    assert {c.strategy for c in plan_cells(suite, registry)} == {"scratch"}  # searched cells come at run time
    plans = plan_searches(suite, registry)
    assert [p.strategy.id for p in plans] == ["linear_probe", "full"]
    assert len({p.key for p in plans}) == 2


@pytest.mark.parametrize(
    ("change", "key", "says"),
    [
        ({"lr": {"low": 0.1, "high": 0.01}}, "search.space", "low (0.1) must be below high (0.01)"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "search.space", "a log range needs low > 0"),
        ({"nonsense": {"low": 1, "high": 2}}, "search.space.training.nonsense", "no training setting 'nonsense'"),
        ({"optimizer": {"low": 1, "high": 2}}, "search.space.training.optimizer", "is not a number"),
        ({"optimizer": []}, "search.space", "an empty list of choices"),
        ({"optimizer": ["sgd", "rmsprop"]}, "search.space.training.optimizer[1]", "rmsprop"),
        ({"epochs": {"low": 1.5, "high": 3}}, "search.space.training.epochs", "integer setting"),
        ({"lr": {"low": 1e-3, "high": 20.0}}, "search.space.training.lr.high", "less than or equal to 10"),
    ],
)
def test_bad_training_ranges_name_their_key(tmp_path: Path, registry, change, key, says) -> None:
    data = _data(tmp_path, search={"method": "random", "trials": 6, "space": {"training": change}})
    with pytest.raises(SuiteError) as error:
        parse_suite(data, "s.toml", registry)
    assert f"s.toml: {key}" in str(error.value) and says in str(error.value)


@pytest.mark.parametrize(
    ("search", "key", "says"),
    [
        ({"trials": 0, "space": SPACE}, "search.trials", "greater than or equal to 1"),
        ({"method": "grid", "space": SPACE}, "search.space.training.lr", "a grid search needs choices"),
        (
            {"method": "grid", "trials": 5, "space": {"training": {"epochs": [1, 2]}}},
            "search.trials",
            "only 2 points",
        ),
        ({"space": {"options": {"rank": [2, 4]}}}, "search.space.options.rank", "no option of strategy"),
        ({"space": {"lr": {"low": 0.1, "high": 1.0}}}, "search.space.lr", "unknown path"),
        ({"method": "bayes", "space": SPACE}, "search.method", "'random', 'tpe' or 'grid'"),
        ({"trials": 4}, "search.space", "no strategy has a path to search"),
    ],
)
def test_bad_searches_name_their_key(tmp_path: Path, registry, search, key, says) -> None:
    with pytest.raises(SuiteError) as error:
        parse_suite(_data(tmp_path, search=search), "s.toml", registry)
    assert f"s.toml: {key}" in str(error.value) and says in str(error.value), str(error.value)


def test_a_searched_strategy_is_not_also_swept(tmp_path: Path, registry) -> None:
    data = _data(tmp_path)
    data["strategies"][0]["training"] = {"batch_size": [4, 8]}
    with pytest.raises(SuiteError, match=r"strategies\[0\]: a searched strategy cannot also sweep training.batch_size"):
        parse_suite(data, "s.toml", registry)


def test_bad_search_input_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    data = _data(
        tmp_path, search={"method": "random", "trials": 3, "space": {"training": {"lr": {"low": 1.0, "high": 0.5}}}}
    )
    process = _bench("plan", str(_write(tmp_path, data)))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert stderr.strip().count("\n") == 0 and "search.space" in stderr and "Traceback" not in stderr


# ------------------------------------------------------------------ running a search


def test_a_search_runs_its_trials_then_the_chosen_setting_on_every_seed(tmp_path: Path) -> None:
    suite = _write(tmp_path, _data(tmp_path))
    stderr = _run(suite)
    out = tmp_path / "out"
    summaries = {s["strategy"]: s for s in read_summaries(out)}
    assert set(summaries) == {"linear_probe", "full"}
    for name, summary in summaries.items():
        trials = summary["trials"]
        assert len(trials) == 6 and all(t["state"] == "complete" for t in trials), name
        lrs = [t["params"]["training.lr"] for t in trials]
        assert len(set(lrs)) == 6 and all(1e-4 <= lr <= 1e-1 for lr in lrs)
        best = max(trials, key=lambda t: t["value"])
        assert summary["best"]["number"] == best["number"]
        assert summary["finished"] and set(summary["importances"]) == {"training.lr", "training.weight_decay"}
        for trial in trials:  # each trial is a stored cell trained with the search seed, scored on val
            cell = json.loads((out / "cells" / f"{trial['cell']}.json").read_text())
            assert cell["seed"] == 1000 and cell["setting"].startswith(f"trial {trial['number']}: ")
            assert cell["curve"][-1]["val"]["top1"] == trial["value"]
    manifest = json.loads((out / "manifest.json").read_text())
    finals = [manifest["labels"][key] for key in manifest["cells"]]
    assert sorted((f["strategy"], f["setting"]) for f in finals) == sorted(
        (name, s["chosen"]) for name, s in summaries.items() for _ in (0, 1)
    )
    assert "14 cells" not in stderr and "16 cells: 0 already done, this run: 16 ok" in stderr
    report = build_report(out)
    table = report.tables[0].rows.set_index("strategy")
    for name, summary in summaries.items():
        row = table.loc[name]
        assert row["setting"] == summary["chosen"] and row["n"] == 2 and row["trials"] == 6
        trial_seconds = sum(
            json.loads((out / "cells" / f"{t['cell']}.json").read_text())["cost"]["train_seconds"]
            for t in summary["trials"]
        )
        assert math.isclose(row["tuning_device_hours"], trial_seconds / 3600)
        assert row["best_val_search"] == summary["best"]["value"]
    assert any("tuned by search" in note for note in report.tables[0].notes)
    again = _run(suite)
    assert "16 cells: 16 already done, this run: nothing to run" in again
    curves = tuning_curves(out)["cls"]
    for curve in curves:  # the tuning curve: the running best of the trials' scores, device-hours summed
        summary = summaries[curve["strategy"]]
        assert curve["best"][-1] == summary["best"]["value"]
        assert curve["best"] == [max(t["value"] for t in summary["trials"][: i + 1]) for i in range(6)]
        assert curve["device_hours"][-1] == pytest.approx(table.loc[curve["strategy"], "tuning_device_hours"])
    plotted = subprocess.run(
        [sys.executable, "-m", "harness", "plot", str(out), "--format", "png"], capture_output=True, text=True
    )
    assert plotted.returncode == 0, plotted.stderr
    assert (out / "plots" / "cls-tuning.png").stat().st_size > 10_000
    planned = subprocess.run(
        [sys.executable, "-m", "harness", "plan", str(suite), "--format", "json"], capture_output=True, text=True
    )
    assert planned.returncode == 0, planned.stderr
    searches = {s["strategy"]: s for s in json.loads(planned.stdout)["searches"]}
    assert {(s["trials"], s["trials_done"], s["final_runs"], s["final_runs_done"]) for s in searches.values()} == {
        (6, 6, 2, 2)
    }


def test_the_plan_counts_trials_and_final_runs_and_estimates_both(tmp_path: Path) -> None:
    planned = subprocess.run(
        [sys.executable, "-m", "harness", "plan", str(_write(tmp_path, _data(tmp_path)))],
        capture_output=True,
        text=True,
    )
    assert planned.returncode == 0, planned.stderr
    lines = [line for line in planned.stdout.splitlines() if line.startswith("search ")]
    assert len(lines) == 2
    assert all("6 trials (0 done), then 2 final runs (0 done); est. " in line for line in lines)


def test_a_killed_search_resumes_with_its_trials_kept_and_the_same_proposals(tmp_path: Path) -> None:
    data = _data(tmp_path)
    data["strategies"] = data["strategies"][1:]  # full, tpe: each trial takes a few seconds
    data.pop("baseline")
    data["search"]["parallel"] = 2
    (tmp_path / "whole").mkdir()
    _run(_write(tmp_path / "whole", {**data, "output": str(tmp_path / "whole" / "out")}))
    expected = _trials(tmp_path / "whole" / "out")

    suite = _write(tmp_path, data)
    cells = tmp_path / "out" / "cells"
    process = _bench("run", str(suite), "--quiet")
    deadline = time.monotonic() + 600
    while len(list(cells.glob("*.json"))) < 3:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    assert 3 <= len(finished) < 8, "the kill came mid-search"

    stderr = _run(suite)
    after = {p.name: p.read_bytes() for p in cells.glob("*.json")}
    assert {name: after[name] for name in finished} == finished  # kept byte for byte, not recomputed
    assert f"{len(finished)} already done" in stderr
    assert _trials(tmp_path / "out") == expected  # the same proposals, scored the same


def test_processes_with_two_slots_run_the_same_trials_as_sequential(tmp_path: Path) -> None:
    data = _data(tmp_path)
    data["search"]["parallel"] = 2
    data["training"] = {**data["training"], "threads": 1}  # the same arithmetic in both: one thread each
    runs = {}
    for executor in ("sequential", "processes"):
        folder = tmp_path / executor
        folder.mkdir()
        extra = (
            {"executor": {"name": "processes", "options": {"slots": 2, "threads": 1}}}
            if executor == "processes"
            else {}
        )
        suite = _write(folder, {**data, "output": str(folder / "out"), **extra})
        _run(suite)
        runs[executor] = (_trials(folder / "out"), build_report(folder / "out").tables[0].rows)
    assert runs["sequential"][0] == runs["processes"][0]
    a, b = (r[1].set_index("strategy")[["setting", "mean", "seed_values"]] for r in runs.values())
    assert a.to_dict() == b.to_dict()


def test_a_grid_search_visits_every_point_once(tmp_path: Path) -> None:
    data = _data(tmp_path, search={"method": "grid", "space": {"training": {"lr": [1e-3, 3e-3, 1e-2]}}})
    data["strategies"] = data["strategies"][:1]
    data["seeds"] = [0]
    data.pop("baseline")
    _run(_write(tmp_path, data))
    (summary,) = read_summaries(tmp_path / "out")
    assert summary["budget"] == 3 and summary["finished"]
    assert sorted(t["params"]["training.lr"] for t in summary["trials"]) == [1e-3, 3e-3, 1e-2]


def test_the_running_best_follows_the_metric_direction() -> None:
    assert best_so_far([None, 0.2, 0.1, 0.3], minimize=False)[1:] == [0.2, 0.2, 0.3]
    assert best_so_far([0.2, 0.1, None, 0.3], minimize=True) == [0.2, 0.1, 0.1, 0.1]

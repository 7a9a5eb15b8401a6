"""`--set PATH=VALUE` (settings changed on the command line) and `--only KEY=VALUE` (a part of the grid)."""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli import create_app
from harness.errors import BenchError
from harness.overrides import SHOWN, ShadowedOverride, apply_overrides, parse_override, parse_overrides
from harness.selection import parse_only
from harness.settings import Training
from harness.suite import load_suite
from tests.conftest import tiny_dataset, tiny_suite, to_toml

runner = CliRunner()
app = create_app()

DISTILL = {"name": "distill", "options": {"teacher_backbone": "resnet18", "teacher_strategy": "full"}}


def _cls_suite(output: Path, **overrides: Any) -> dict[str, Any]:
    """One classification task of 16 images, two epochs in the file (a `--set` brings them to one)."""
    data = tiny_suite(output, **overrides)
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data["training"], "epochs": 2, "max_steps": 2}
    return data


def _documents(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _error(result: Any) -> str:
    """The one line a user error prints (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _plan_rows(*args: str) -> list[dict[str, str]]:
    result = runner.invoke(app, ["plan", *args, "--format", "csv"])
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(result.stdout)))  # warnings go to stderr


# --- --set ----------------------------------------------------------------------------------


def test_set_changes_the_settings_a_run_stores(write_suite, tmp_path: Path) -> None:
    suite = write_suite(_cls_suite(tmp_path / "out", strategies=[{"name": "full"}]))
    result = runner.invoke(app, ["run", str(suite), "-q", "--set", "training.epochs=1", "--set", "seeds=[1]"])
    assert result.exit_code == 0, result.output
    documents = _documents(tmp_path / "out" / "cells")
    assert [(d["settings"]["training"]["epochs"], d["seed"]) for d in documents] == [(1, 1)]
    # an ordinary setting: the file's own cells (epochs = 2) are other cells, not these
    plain = _plan_rows(str(suite), "--seeds", "1")
    assert {row["state"] for row in plain} == {"to run"}
    assert not {row["key"] for row in plain} & {d["key"] for d in documents}


def test_set_addresses_entries_by_name_label_and_index(write_suite, tmp_path: Path, registry) -> None:
    data = _cls_suite(
        tmp_path / "out",
        executor="sequential",
        backbones=[{"name": "resnet18", "label": "r18"}],
        strategies=[{"name": "full"}, {"name": "lora", "label": "lora-a"}],
    )
    data["tasks"].append({"name": "seg", "kind": "segmentation", "dataset": tiny_dataset()})
    suite = write_suite(data)
    overrides = [
        "tasks.seg.training.batch_size=4",  # a task by name; its `training` table is created
        "tasks.0.training.lr=0.5",  # by index
        "backbones.r18.weights=none",  # by label, a bare word is a string
        "strategies.lora.options.rank=2",  # a labelled entry by its plain name (unambiguous)
        "strategies.lora-a.training.epochs=1",
        "executor.name=processes",  # `executor = "sequential"` is the table { name = ... }
        "executor.options.slots=2",
        "device=cpu",
    ]
    loaded = load_suite(suite, registry, overrides=overrides)
    assert loaded.tasks[1].training.batch_size == 4 and loaded.tasks[0].training.lr == 0.5
    assert loaded.backbones[0].weights == "none"
    assert loaded.strategies[1].options == {"rank": 2} and loaded.strategies[1].training.epochs == 1
    assert (loaded.executor.name, loaded.executor.options) == ("processes", {"slots": 2})
    assert loaded.device == "cpu"


def test_set_values_are_toml_values() -> None:
    given = parse_overrides(["a=[4, 8]", "b=1e-3", "c=true", 'd="text"', "e=cuda:0", "f={ x = 1 }", "g = 3 "])
    assert apply_overrides({}, given) == {
        "a": [4, 8],
        "b": 1e-3,
        "c": True,
        "d": "text",
        "e": "cuda:0",
        "f": {"x": 1},
        "g": 3,
    }
    later = apply_overrides({"training": {"epochs": 5}}, parse_overrides(["training.epochs=1", "training.epochs=2"]))
    assert later == {"training": {"epochs": 2}}  # in order: the last one wins


def test_set_paths_into_lists_and_shorthands() -> None:
    data = {
        "loggers": ["tensorboard"],
        "exclude": [{"task": "x"}],
        "tasks": [{"name": "shapes.v2"}],
        "backbones": [{"name": "resnet18", "label": "a"}, {"name": "resnet18", "label": "b"}],
    }
    paths = ["loggers.tensorboard.options.flush_secs=5", "exclude.0.strategy=full", "tasks.shapes.v2.training.lr=0.1"]
    changed = apply_overrides(data, parse_overrides([*paths, "backbones.b.weights=DEFAULT"]))
    assert changed["loggers"] == [{"name": "tensorboard", "options": {"flush_secs": 5}}]
    assert changed["exclude"] == [{"task": "x", "strategy": "full"}]
    assert changed["tasks"] == [{"name": "shapes.v2", "training": {"lr": 0.1}}]  # a name with a dot
    assert changed["backbones"][1]["weights"] == "DEFAULT" and "weights" not in changed["backbones"][0]
    assert data["loggers"] == ["tensorboard"]  # the file's data is left as it was
    with pytest.raises(BenchError, match=r"2 backbones are named 'resnet18' \(a, b\); give the label instead"):
        apply_overrides(data, parse_overrides(["backbones.resnet18.weights=DEFAULT"]))
    with pytest.raises(BenchError, match="exclude is a list of 1; give an index from 0 to 0"):
        apply_overrides(data, parse_overrides(["exclude.2.task=y"]))


def test_a_list_value_makes_a_sweep(write_suite, tmp_path: Path) -> None:
    suite = write_suite(_cls_suite(tmp_path / "out", strategies=[{"name": "full"}, {"name": "lora"}]))
    rows = _plan_rows(str(suite), "--set", "strategies.lora.options.rank=[4,8]", "--set", "training.lr=[0.1,0.01]")
    assert [(row["strategy"], row["setting"]) for row in rows] == [
        ("full", "lr=0.1"),
        ("full", "lr=0.01"),
        ("lora", "lr=0.1, rank=4"),
        ("lora", "lr=0.1, rank=8"),
        ("lora", "lr=0.01, rank=4"),
        ("lora", "lr=0.01, rank=8"),
    ]


def test_the_bundled_suite_takes_set_too(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plain = _plan_rows("--only", "task=shapes-cls,strategy=full,seed=0")
    # the smoke run of the README: --set-all also reaches the stage and tasks that set epochs themselves
    smoke = _plan_rows("--set-all", "training.epochs=1", "--only", "task=shapes-cls,strategy=full,seed=0")
    assert len(plain) == len(smoke) == 2  # the pretraining stage, the cell
    assert plain[0]["task"] == smoke[0]["task"] == "pretrain:shapes-source"
    assert plain[0]["key"] != smoke[0]["key"] and plain[1]["key"] != smoke[1]["key"]  # other settings, other cells


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (
            "tasks.clss.training.batch_size=4",
            "error: --set tasks.clss.training.batch_size=4: no task named 'clss'; tasks: cls",
        ),
        ("tasks.3.training.epochs=1", "no task named '3' and no entry 3 (1 entries); tasks: cls"),
        ("pretrain.src.seed=1", "no pretraining stage named 'src'; pretrain: none declared"),
        ("training.epochs.max=1", "error: --set training.epochs.max=1: training.epochs is 2, not a table"),
        ("training.epochs", "error: --set training.epochs: not PATH=VALUE"),
        ("training..epochs=1", "error: --set training..epochs=1: empty key"),
        ("=1", "error: --set =1: empty key"),
        ("seeds=[0,", "error: --set seeds=[0,: '[0,' is not a TOML value"),
    ],
)
def test_a_bad_set_is_one_line_naming_it(write_suite, tmp_path: Path, option: str, expected: str) -> None:
    suite = write_suite(_cls_suite(tmp_path / "out"))
    for command in ("run", "plan"):
        assert expected in _error(runner.invoke(app, [command, str(suite), "--set", option]))


def test_validation_after_set_names_the_file_the_key_and_the_overrides(write_suite, tmp_path: Path) -> None:
    suite = write_suite(_cls_suite(tmp_path / "out"))
    line = _error(
        runner.invoke(app, ["run", str(suite), "--set", "tasks.cls.training.batch_size=0", "--set", "seeds=[1]"])
    )
    assert line.startswith(f"error: {suite}: tasks[0].training.batch_size: Input should be greater than or equal to 1")
    assert line.endswith("(with --set tasks.cls.training.batch_size=0, --set seeds=[1])")
    line = _error(runner.invoke(app, ["plan", str(suite), "--set", "training.epoch=1"]))
    allowed = ", ".join(Training.model_fields)
    assert line == f"error: {suite}: training.epoch: unknown key; allowed: {allowed} (with --set training.epoch=1)"
    line = _error(runner.invoke(app, ["plan", str(suite), "--set", "strategies.full.options.rank=4"]))
    assert "strategies[2].options.rank: unknown key" in line and "(with --set strategies.full.options.rank=4)" in line


def _shadowing_suite(output: Path) -> dict[str, Any]:
    """Epochs set in `[training]` and again by a task, a strategy and a pretraining stage of their own."""
    data = _cls_suite(output, strategies=[{"name": "full", "training": {"epochs": 3}}, {"name": "linear_probe"}])
    data["tasks"].append({"name": "seg", "kind": "segmentation", "dataset": tiny_dataset(), "training": {"epochs": 4}})
    data["tasks"][0]["training"] = {"batch_size": 4}  # sets something else: not shadowing epochs
    data["pretrain"] = [{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(), "training": {"epochs": 5}}]
    return data


def _warnings(result: Any) -> list[str]:
    assert result.exit_code == 0, result.output
    return [line for line in result.stderr.splitlines() if line.startswith("warning: ")]


def _epochs(loaded: Any) -> dict[str, int]:
    task, strategy = {t.name: t for t in loaded.tasks}, {s.id: s for s in loaded.strategies}
    epochs = {f"{t}/{s}": loaded.training_for(task[t], strategy[s]).epochs for t in task for s in strategy}
    return {**epochs, "pretrain:src": loaded.training.override(loaded.pretrain[0].training).epochs}


def test_a_shadowed_set_warns_once_per_entry_that_keeps_its_own(write_suite, tmp_path: Path, registry) -> None:
    suite = write_suite(_shadowing_suite(tmp_path / "out"))
    said = _warnings(runner.invoke(app, ["plan", str(suite), "--set", "training.epochs=1", "--format", "csv"]))
    assert said == [
        "warning: --set training.epochs=1 does not reach task 'seg', which sets training.epochs = 4 itself; "
        "--set tasks.seg.training.epochs=... sets it there, --set-all training.epochs=... everywhere",
        "warning: --set training.epochs=1 does not reach strategy 'full', which sets training.epochs = 3 itself; "
        "--set strategies.full.training.epochs=... sets it there, --set-all training.epochs=... everywhere",
        "warning: --set training.epochs=1 does not reach pretraining stage 'src', which sets training.epochs = 5 "
        "itself; --set pretrain.src.training.epochs=... sets it there, --set-all training.epochs=... everywhere",
    ]
    with pytest.warns(ShadowedOverride) as caught:  # Python callers of load_suite are told too
        loaded = load_suite(suite, registry, overrides=["training.epochs=1"])
    assert len(caught) == 3
    assert _epochs(loaded) == {  # what the warnings say: the entries' own epochs won
        "cls/full": 3, "cls/linear_probe": 1, "seg/full": 3, "seg/linear_probe": 4, "pretrain:src": 5,
    }  # fmt: skip
    # a table value and `run` say the same; a setting no entry sets for itself is quiet
    said = _warnings(runner.invoke(app, ["plan", str(suite), "--set", "training={ epochs = 1 }"]))
    assert len(said) == 3 and all("--set training={ epochs = 1 } does not reach" in line for line in said)
    assert _warnings(runner.invoke(app, ["plan", str(suite), "--set", "training.lr=0.1"])) == []


def test_paths_and_set_all_reach_the_shadowed_entries(write_suite, tmp_path: Path, registry) -> None:
    suite = write_suite(_shadowing_suite(tmp_path / "out"))
    everywhere = {"cls/full": 1, "cls/linear_probe": 1, "seg/full": 1, "seg/linear_probe": 1, "pretrain:src": 1}
    paths = ["tasks.seg.training.epochs=1", "strategies.full.training.epochs=1", "pretrain.src.training.epochs=1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShadowedOverride)
        assert _epochs(load_suite(suite, registry, overrides=["training.epochs=1", *paths])) == everywhere
        set_all = parse_override("training.epochs=1", everywhere=True)
        assert _epochs(load_suite(suite, registry, overrides=[set_all])) == everywhere
    assert _warnings(runner.invoke(app, ["plan", str(suite), "--set-all", "training.epochs=1"])) == []
    # entries that do not set epochs are left to `[training]`; a later --set still wins for its entry
    loaded = load_suite(suite, registry, overrides=[set_all, "strategies.full.training.epochs=2"])
    assert loaded.tasks[0].training.model_fields_set == {"batch_size"}
    assert _epochs(loaded)["cls/full"] == 2 and _epochs(loaded)["cls/linear_probe"] == 1
    line = _error(runner.invoke(app, ["plan", str(suite), "--set-all", "seeds=[1]"]))
    assert line.startswith("error: --set-all seeds=[1]: only training.KEY settings") and "allowed: training.KEY" in line


# --- --only -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory) -> tuple[Path, Path, Any]:
    """A suite with a pretraining stage and a distillation cell, run with `--only strategy=distill`."""
    root = tmp_path_factory.mktemp("only")
    data = _cls_suite(root / "out", strategies=[{"name": "linear_probe"}, {"name": "full"}, DISTILL])
    data["training"]["epochs"] = 1
    data["pretrain"] = [{"name": "src", "backbone": "resnet18", "dataset": tiny_dataset(seed=5)}]
    data["backbones"] = [{"name": "resnet18", "weights": "pretrain:src"}]
    suite = root / "suite.toml"
    suite.write_text(to_toml(data))
    result = runner.invoke(app, ["run", str(suite), "-q", "--only", "strategy=distill"])
    return suite, root / "out", result


def test_only_runs_the_selected_cells_and_what_they_need(selected_run) -> None:
    _, out, result = selected_run
    assert result.exit_code == 0, result.output
    cells = _documents(out / "cells")
    # the distillation cell and its teacher (the full fine-tune), not the linear probe
    assert sorted((d["strategy"], d["status"]) for d in cells) == [("distill", "ok"), ("full", "ok")]
    assert [d["status"] for d in _documents(out / "pretrain")] == ["ok"]  # the stage both start from
    assert "2 cells: 0 already done, this run: 2 ok" in result.output


def test_only_on_plan_lists_the_selected_cells_and_their_teachers(selected_run) -> None:
    suite, _, _ = selected_run
    rows = _plan_rows(str(suite), "--only", "strategy=distill")
    assert [(row["task"], row["strategy"], row["state"]) for row in rows] == [
        ("pretrain:src", "full", "done"),
        ("cls", "full", "done"),
        ("cls", "distill", "done"),
    ]
    table = runner.invoke(app, ["plan", str(suite), "--only", "strategy=linear_probe", "--only", "strategy=distill"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == "tiny: 3 of 3 cells (--only strategy=linear_probe,strategy=distill)"
    assert "cells whose models the selected cells need (teachers, inputs): 2" in lines
    probe = runner.invoke(app, ["plan", str(suite), "--only", "strategy=linear_probe,task=cls,seed=0"])
    assert probe.output.splitlines()[0] == "tiny: 1 of 3 cells (--only strategy=linear_probe,task=cls,seed=0)"
    assert "1 to run" in probe.output  # numbered as in the whole grid
    assert any(line.startswith("1  cls") for line in probe.output.splitlines())


def test_only_on_report_keeps_those_rows(selected_run) -> None:
    _, out, _ = selected_run
    result = runner.invoke(app, ["report", str(out), "--format", "csv", "--only", "strategy=distill"])
    assert result.exit_code == 0, result.output
    assert [row["strategy"] for row in csv.DictReader(io.StringIO(result.output))] == ["distill"]
    both = runner.invoke(app, ["report", str(out), "-f", "csv", "--strategy", "full", "--only", "strategy=distill"])
    assert "error: --only strategy=distill: no strategy in common with --strategy full" in _error(both)
    seed = _error(runner.invoke(app, ["report", str(out), "--only", "seed=0"]))
    assert seed == "error: --only seed=0: unknown key 'seed'; allowed: task, backbone, strategy"
    wrong = _error(runner.invoke(app, ["report", str(out), "--only", "strategy=ful"]))
    assert wrong == f"error: --only strategy=ful: no strategy 'ful' in {out}; strategies: full, distill"


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("strategy=ful", "error: --only strategy=ful: no strategy 'ful' in {suite}; strategies: linear_probe, full"),
        ("stratgy=full", "error: --only stratgy=full: unknown key 'stratgy'; allowed: task, backbone, strategy, seed"),
        ("seed=3", "error: --only seed=3: no seed '3' in {suite}; seeds: 0"),
        ("setting=lr=1", "error: --only setting=lr=1: no setting 'lr=1' in {suite}; settings: none (nothing is swept)"),
        ("strategy", "error: --only strategy: 'strategy' is not KEY=VALUE"),
        ("task=cls,", "error: --only task=cls,: '' is not KEY=VALUE"),
    ],
)
def test_a_bad_only_is_one_line(write_suite, tmp_path: Path, option: str, expected: str) -> None:
    suite = write_suite(_cls_suite(tmp_path / "out", strategies=[{"name": "linear_probe"}, {"name": "full"}]))
    for command in ("run", "plan"):
        assert _error(runner.invoke(app, [command, str(suite), "--only", option])).startswith(
            expected.format(suite=suite)
        )
    assert not (tmp_path / "out").exists()  # nothing ran


def test_only_selects_swept_settings_by_part(write_suite, tmp_path: Path) -> None:
    strategies = [{"name": "lora", "options": {"rank": [2, 4]}, "training": {"lr": [0.1, 0.01]}}]
    suite = write_suite(_cls_suite(tmp_path / "out", strategies=strategies))
    rows = _plan_rows(str(suite), "--only", "setting=rank=4")
    assert [row["setting"] for row in rows] == ["lr=0.1, rank=4", "lr=0.01, rank=4"]
    rows = _plan_rows(str(suite), "--only", "setting=rank=4,setting=lr=0.01,setting=lr=0.1")
    assert len(rows) == 2  # rank=4 and (lr=0.01 or lr=0.1)
    rows = _plan_rows(str(suite), "--only", "setting=lr=1e-2", "--only", "setting = rank = 2.0")  # TOML values
    assert [row["setting"] for row in rows] == ["lr=0.01, rank=2"]
    excluded = _error(runner.invoke(app, ["plan", str(suite), "--only", "setting=rank=4", "--only", "seed=0,task=x"]))
    assert excluded.startswith("error: --only task=x: no task 'x'")


def test_only_that_matches_no_cell_says_so(write_suite, tmp_path: Path) -> None:
    data = _cls_suite(tmp_path / "out", strategies=[{"name": "linear_probe"}, {"name": "full"}])
    data["tasks"].append({"name": "seg", "kind": "segmentation", "dataset": tiny_dataset()})
    data["exclude"] = [{"task": "seg", "strategy": "full"}]
    suite = write_suite(data)
    line = _error(runner.invoke(app, ["plan", str(suite), "--only", "task=seg,strategy=full"]))
    assert line.startswith(f"error: --only task=seg,strategy=full: no cell of {suite} has all of these")


def test_parse_errors_are_bench_errors() -> None:
    with pytest.raises(BenchError, match="line breaks"):
        parse_overrides(["name=a\nb"])


def test_only_selects_a_list_valued_setting_as_plan_shows_it(write_suite, tmp_path: Path) -> None:
    """The comma inside `layers=['conv', 'linear']` is part of the value, not a break between KEY=VALUE parts."""
    strategies = [{"name": "lora", "options": {"rank": 4, "layers": [["conv"], ["conv", "linear"]]}}]
    suite = write_suite(_cls_suite(tmp_path / "out", strategies=strategies))
    shown = [row["setting"] for row in _plan_rows(str(suite))]
    assert shown == ["layers=['conv']", "layers=['conv', 'linear']"]
    rows = _plan_rows(str(suite), "--only", "setting=layers=['conv', 'linear'],task=cls")
    assert [row["setting"] for row in rows] == ["layers=['conv', 'linear']"]
    rows = _plan_rows(str(suite), "--only", 'setting=layers=["conv","linear"],setting=layers=["conv"]')
    assert len(rows) == 2
    assert parse_only(["task=a,setting=x=[1, 2],strategy=b'c,seed=0"]).given == (
        "task=a", "setting=x=[1, 2]", "strategy=b'c", "seed=0",
    )  # fmt: skip


def test_a_huge_set_is_still_a_short_line(write_suite, tmp_path: Path) -> None:
    """An error repeats at most SHOWN characters of an option, however long the value or path."""
    suite = write_suite(_cls_suite(tmp_path / "out"))
    for option in (
        "name=" + "x" * 100_000,
        "training.epochs=" + "[" * 2000 + "]" * 2000,
        "tasks." + "x" * 5000 + ".training.epochs=1",
        "x" * 5000,
        "training.lr=[" + "1," * 5000,
        "training.epochs." + "y" * 5000 + "=1",
    ):
        line = _error(runner.invoke(app, ["plan", str(suite), "--set", option]))
        assert len(line) < 4 * SHOWN + 400, line[:300]

"""Nothing wrong is accepted: every suite mistake and odd input is exit 2 with one line, before anything runs.

Each test here reproduces a way a suite or command line used to be accepted silently, or to end
in a traceback (issue 10).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from harness.cli import create_app
from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.suite import MAX_SUITE_BYTES, load_suite, parse_suite, with_overrides
from tests.conftest import tiny_suite, to_toml

runner = CliRunner()
app = create_app()


def _one_task(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data = tiny_suite(tmp_path / "out", **overrides)
    data["tasks"] = data["tasks"][:1]
    return data


def _refused(data: dict[str, Any], registry, expected: str, plan: bool = False) -> str:
    """The suite is refused with one line naming the source and containing `expected`."""
    with pytest.raises(SuiteError) as info:
        suite = parse_suite(data, "s.toml", registry)
        if plan:
            plan_cells(suite, registry)
    message = str(info.value)
    assert "\n" not in message and message.startswith("s.toml: "), message
    assert expected in message, message
    return message


def _cli_refuses(args: list[str], expected: str) -> str:
    """`bench ARGS` exits 2 with one line on stderr, `error: ...` containing `expected`, and no traceback."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


# --- 1. command-line overrides keep every sweep ------------------------------------------------


def _swept(tmp_path: Path) -> dict[str, Any]:
    data = _one_task(tmp_path, strategies=[{"name": "full", "options": {"batchnorm": ["train", "freeze"]}}])
    data["training"] = {**data["training"], "lr": [2e-3, 5e-3]}
    data["tasks"][0]["training"] = {"epochs": 1}  # a task that sets other training settings
    data["strategies"].append({"name": "linear_probe", "training": {"batch_size": [4, 8]}})
    return data


@pytest.mark.parametrize(
    "override",
    [{"seeds": [0, 1]}, {"output": "elsewhere"}, {"device": "cpu"}, {"executor": {"name": "processes"}}],
)
def test_command_line_overrides_keep_every_sweep(tmp_path: Path, registry, override: dict[str, Any]) -> None:
    suite = parse_suite(_swept(tmp_path), "s.toml", registry)
    before = plan_cells(suite, registry)
    assert len(before) == 2 * 2 + 2 * 2  # full: lr x batchnorm; linear_probe: lr x batch_size
    assert {c.settings.training.lr for c in before} == {2e-3, 5e-3}
    after = plan_cells(
        with_overrides(suite, **{k: str(tmp_path / v) if k == "output" else v for k, v in override.items()}), registry
    )
    if "seeds" in override:
        assert [c.key for c in after if c.seed == 0] == [c.key for c in before]
        assert len(after) == 2 * len(before)
    else:
        assert [c.key for c in after] == [c.key for c in before]
    assert [c.setting for c in after if c.seed == 0] == [c.setting for c in before]


def test_plan_with_seeds_plans_the_suites_sweep(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(to_toml(_swept(tmp_path)))
    result = runner.invoke(app, ["plan", str(suite), "--seeds", "0,1", "--format", "json"])
    assert result.exit_code == 0, result.output
    cells = json.loads(result.stdout)["cells"]
    assert len(cells) == 16
    assert all("lr=" in c["setting"] for c in cells)


# --- 2. identical settings under two labels ----------------------------------------------------


def test_two_tasks_with_identical_settings_are_refused(tmp_path: Path, registry) -> None:
    data = _one_task(tmp_path)
    data["tasks"].append({**data["tasks"][0], "name": "cls-again"})
    _refused(data, registry, "tasks[1].name: 'cls-again' makes the same cells as tasks[0] ('cls')", plan=True)


def test_two_backbone_labels_with_identical_settings_are_refused(tmp_path: Path, registry) -> None:
    data = _one_task(tmp_path, backbones=[{"name": "resnet18", "label": "a"}, {"name": "resnet18", "label": "b"}])
    _refused(data, registry, "backbones[1].label: 'b' makes the same cells as backbones[0] ('a')", plan=True)


def test_two_strategy_labels_with_identical_settings_are_refused(tmp_path: Path, registry) -> None:
    strategies = [{"name": "scratch"}, {"name": "full", "label": "ft"}, {"name": "full", "label": "ft2"}]
    data = _one_task(tmp_path, strategies=strategies)
    _refused(data, registry, "strategies[2].label: 'ft2' makes the same cells as strategies[1] ('ft')", plan=True)


def test_sweeps_that_overlap_across_labels_are_refused(tmp_path: Path, registry) -> None:
    strategies = [
        {"name": "full", "label": "a", "training": {"lr": [0.1, 0.2]}},
        {"name": "full", "label": "b", "training": {"lr": [0.2, 0.3]}},
    ]
    _refused(_one_task(tmp_path, strategies=strategies), registry, "strategies[1].label: 'b'", plan=True)


def test_a_sweep_repeating_a_value_is_refused(tmp_path: Path, registry) -> None:
    strategies = [{"name": "lora", "options": {"rank": [4, 4]}}]
    message = _refused(_one_task(tmp_path, strategies=strategies), registry, "strategies[0]:", plan=True)
    assert "'rank=4' and 'rank=4' make the same cell" in message


def test_backbones_differing_only_in_weights_a_strategy_ignores_are_refused(tmp_path: Path, registry) -> None:
    checkpoint = tmp_path / "r18.pt"
    torch.save({"stages.0.0.weight": torch.zeros(1)}, checkpoint)
    backbones = [
        {"name": "resnet18", "label": "random"},
        {"name": "resnet18", "label": "ckpt", "weights": str(checkpoint)},
    ]
    data = _one_task(tmp_path, backbones=backbones, strategies=[{"name": "scratch"}, {"name": "full"}])
    _refused(data, registry, "backbones[1].label: 'ckpt' makes the same cells as backbones[0] ('random')", plan=True)
    data["exclude"] = [{"backbone": "ckpt", "strategy": "scratch"}]  # what the message suggests
    suite = parse_suite(data, "s.toml", registry)
    assert len(plan_cells(suite, registry)) == 3


def test_duplicate_settings_exit_2_on_the_command_line(tmp_path: Path) -> None:
    data = _one_task(tmp_path, strategies=[{"name": "full", "label": "x"}, {"name": "full", "label": "y"}])
    suite = tmp_path / "dup.toml"
    suite.write_text(to_toml(data))
    for command in ("plan", "run"):
        _cli_refuses([command, str(suite)], f"{suite}: strategies[1].label: 'y' makes the same cells")
    assert not (tmp_path / "out" / "cells").exists()  # nothing ran


# --- 3. strict types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"training": {"lr": True}}, "training.lr: Input should be a valid number (got True)"),
        ({"training": {"epochs": "1"}}, "training.epochs: Input should be a valid integer (got '1')"),
        ({"training": {"epochs": 1.0}}, "training.epochs: Input should be a valid integer (got 1.0)"),
        (
            {"training": {"amp": "yes"}},
            "training.amp: Value error, allowed: 'auto', 'fp16', 'bf16', true, false (got 'yes')",
        ),
        ({"training": {"amp": 1}}, "training.amp: Value error, allowed: 'auto', 'fp16', 'bf16', true, false (got 1)"),
        (
            {"training": {"channels_last": "on"}},
            "training.channels_last: Value error, allowed: 'auto', true, false (got 'on')",
        ),
        ({"training": {"lr": [0.1, "0.2"]}}, "training.lr[1]: Input should be a valid number (got '0.2')"),
        ({"seeds": ["0"]}, "seeds[0]: Input should be a valid integer (got '0')"),
        ({"seeds": [True]}, "seeds[0]: Input should be a valid integer (got True)"),
        ({"name": 3}, "name: Input should be a valid string (got 3)"),
        ({"device": 0}, "device: Input should be a valid string (got 0)"),
        (
            {"strategies": [{"name": "lora", "options": {"rank": "8"}}]},
            "strategies[0].options.rank: Input should be a valid integer",
        ),
        (
            {"strategies": [{"name": "lora", "options": {"dropout": False}}]},
            "strategies[0].options.dropout: Input should be a valid number",
        ),
        (
            {"strategies": [{"name": "lora", "options": {"rank": ["8", 4]}}]},
            "strategies[0].options.rank: Input should be a valid integer (got '8')",
        ),
        (
            {
                "tasks": [
                    {
                        "name": "c",
                        "kind": "classification",
                        "dataset": {"name": "shapes", "options": {"image_size": "32"}},
                    }
                ]
            },
            "tasks[0].dataset.options.image_size: Input should be a valid integer",
        ),
    ],
)
def test_types_are_strict(tmp_path: Path, registry, change: dict[str, Any], expected: str) -> None:
    data = _one_task(tmp_path)
    for key, value in change.items():
        data[key] = {**data[key], **value} if key == "training" else value
    if "strategies" in change:
        del data["baseline"]
    _refused(data, registry, expected)


def test_an_integer_is_a_float_and_tuples_come_from_lists(tmp_path: Path, registry) -> None:
    data = _one_task(tmp_path)
    data["training"] = {**data["training"], "lr": 1, "momentum": 0}
    data["tasks"][0]["dataset"]["options"]["object_scale"] = [0.2, 0.3]  # a tuple option
    suite = parse_suite(data, "s.toml", registry)
    (cell, *_) = plan_cells(suite, registry)
    assert cell.settings.training.lr == 1.0 and isinstance(suite.training.lr, float)
    shapes = registry.create("dataset", "shapes", cell.settings.task.dataset.options)
    assert shapes.options.object_scale == (0.2, 0.3)


# --- 4. internal fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ((), "training_sweep: unknown key; allowed: name, output, seeds"),
        (("tasks", 0), "tasks[0].training_sweep: unknown key; allowed: name, kind, dataset, metric, options, training"),
        (("strategies", 0), "strategies[0].training_sweep: unknown key; allowed: name, label, options, training"),
    ],
)
def test_internal_fields_are_unknown_keys(tmp_path: Path, registry, where: tuple[Any, ...], expected: str) -> None:
    data = _one_task(tmp_path)
    target: Any = data
    for part in where:
        target = target[part]
    target["training_sweep"] = {"lr": [5.0]}
    message = _refused(data, registry, expected)
    assert "training_sweep" not in message.split("allowed:")[1]


def test_source_is_an_unknown_key(tmp_path: Path, registry) -> None:
    message = _refused({**_one_task(tmp_path), "source": "elsewhere"}, registry, "s.toml: source: unknown key")
    assert "source" not in message.split("allowed:")[1]


# --- 5. options, paths, seeds and names, checked before anything runs ----------------------------


def test_weights_files_are_checked_when_the_suite_loads(tmp_path: Path, registry) -> None:
    garbage, folder, listed = tmp_path / "garbage.pt", tmp_path / "folder.pth", tmp_path / "list.pt"
    good = tmp_path / "ok.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    folder.mkdir()
    torch.save([1, 2], listed)
    torch.save({"stages.0.0.weight": torch.zeros(1)}, good)
    for weights, expected in (
        (str(tmp_path / "absent.pt"), f"backbones[0].weights: no such file: {tmp_path / 'absent.pt'}"),
        (str(garbage), f"backbones[0].weights: {garbage} is not a readable checkpoint (UnpicklingError"),
        (str(folder), f"backbones[0].weights: not a regular file: {folder}"),
        (str(listed), f"backbones[0].weights: {listed} is not a checkpoint: a state dict was expected, got list"),
        (f"file:{tmp_path / 'absent.bin'}", "backbones[0].weights: no such file"),
    ):
        _refused(_one_task(tmp_path, backbones=[{"name": "resnet18", "weights": weights}]), registry, expected)
    parse_suite(_one_task(tmp_path, backbones=[{"name": "resnet18", "weights": str(good)}]), "s.toml", registry)
    # only strategies that start from scratch: the weights are never read
    scratch = _one_task(
        tmp_path, backbones=[{"name": "resnet18", "weights": str(garbage)}], strategies=[{"name": "scratch"}]
    )
    parse_suite(scratch, "s.toml", registry)


def test_a_broken_teacher_checkpoint_is_refused(tmp_path: Path, registry) -> None:
    garbage = tmp_path / "teacher.pt"
    garbage.write_bytes(b"garbage")
    options = {"teacher_backbone": "resnet18", "teacher_checkpoint": str(garbage)}
    data = _one_task(tmp_path, strategies=[{"name": "distill", "options": options}])
    _refused(data, registry, f"strategies[0].options.teacher_checkpoint: {garbage} is not a readable checkpoint")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"layers": []}, "strategies[0].options.layers: List should have at least 1 item"),
        ({"layers": [["conv"], []]}, "strategies[0].options.layers[1]: List should have at least 1 item"),
        ({"pattern": "stages.(4"}, "strategies[0].options.pattern: Value error, not a regular expression"),
    ],
)
def test_lora_options_that_cannot_work_are_refused(tmp_path: Path, registry, options, expected: str) -> None:
    _refused(_one_task(tmp_path, strategies=[{"name": "lora", "options": options}]), registry, expected)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**63 - 1])
def test_seeds_out_of_range_are_refused(tmp_path: Path, registry, seed: int) -> None:
    _refused(_one_task(tmp_path, seeds=[0, seed]), registry, "seeds[1]: Input should be")


def test_the_largest_seed_is_accepted(tmp_path: Path, registry) -> None:
    suite = parse_suite(_one_task(tmp_path, seeds=[2**32 - 1]), "s.toml", registry)
    assert plan_cells(suite, registry)[0].seed == 2**32 - 1


@pytest.mark.parametrize(
    "name",
    ["../../x", "..", ".", "", "/abs/path", "a/b", "a\\b", "a\x00b", "x" * 101, "line\nbreak", " padded", "~user"],
)
def test_unsafe_suite_names_are_refused(tmp_path: Path, registry, name: str) -> None:
    data = _one_task(tmp_path)
    del data["output"]  # results/<name>
    _refused({**data, "name": name}, registry, "s.toml: name: ")


@pytest.mark.parametrize("label", ["a\x00b", "tab\there", "esc\x1b[31m", "", "y" * 101])
def test_labels_with_control_characters_are_refused(tmp_path: Path, registry, label: str) -> None:
    data = _one_task(tmp_path)
    data["tasks"][0]["name"] = label
    _refused(data, registry, "tasks[0].name: ")
    data = _one_task(tmp_path, strategies=[{"name": "full", "label": label}])
    _refused(data, registry, "strategies[0].label: ")


def test_an_output_that_is_not_a_directory_is_refused(tmp_path: Path, registry) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for output, expected in (
        (str(a_file), f"output: Value error, '{a_file}' exists and is not a directory"),
        ("/dev/null", "output: Value error, '/dev/null' exists and is not a directory"),
        (str(a_file / "sub"), f"output: Value error, '{a_file / 'sub'}': '{a_file}' is not a directory"),
    ):
        _refused({**_one_task(tmp_path), "output": output}, registry, expected)


def test_a_default_output_that_cannot_be_made_is_refused(tmp_path: Path, registry, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "tiny").write_text("")
    data = _one_task(tmp_path)
    del data["output"]
    _refused(data, registry, "name: the default results directory cannot be made: 'results/tiny' exists")


# --- 6. odd inputs: exit 2, one line, no traceback -----------------------------------------------


def _suite_file(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(to_toml(_one_task(tmp_path, **overrides)))
    return path


def test_a_suite_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    _cli_refuses(["plan", str(path)], f"{path}: not UTF-8 text (byte 0xe9 at offset 11)")


def test_a_directory_as_the_suite(tmp_path: Path) -> None:
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    _cli_refuses(["plan", str(folder)], f"{folder}: is a directory")
    _cli_refuses(["run", str(tmp_path)], f"{tmp_path}: is a directory")


def test_a_symlink_loop_as_the_suite(tmp_path: Path) -> None:
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    _cli_refuses(["plan", str(loop)], f"{loop}: cannot read the suite file: Too many levels of symbolic links")
    bare = tmp_path / "loop"
    bare.symlink_to(bare)
    _cli_refuses(["plan", str(bare)], f"{bare}: cannot read the suite file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_as_the_suite_is_not_read() -> None:
    _cli_refuses(["plan", "/dev/zero"], "/dev/zero: not a regular file")


def test_a_fifo_as_the_suite_is_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    _cli_refuses(["plan", str(fifo)], f"{fifo}: not a regular file")


def test_a_huge_suite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text("# padding\n" * (MAX_SUITE_BYTES // 10 + 1))
    _cli_refuses(["plan", str(path)], f"{path}: larger than 1024 KiB")


def test_deeply_nested_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 10000 + "]" * 10000 + "\n")
    _cli_refuses(["plan", str(path)], f"{path}: invalid TOML: nested too deeply")
    data = _one_task(tmp_path)
    nested: Any = 1
    for _ in range(40):
        nested = [nested]
    data["strategies"][0]["options"] = {"batchnorm": nested}
    path.write_text(to_toml(data))
    line = _cli_refuses(["plan", str(path)], f"{path}: strategies[0].options.batchnorm[0][0]")
    assert line.endswith("]: nested too deeply (at most 32 levels)")


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "a\nb"\n')
    _cli_refuses(["plan", str(path)], f"{path}: invalid TOML: ")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a\\u0000b", "name: Value error, control characters"), ("n" * 300, "name: Value error, at most 100 characters")],
)
def test_bad_suite_names_on_the_command_line(tmp_path: Path, name: str, expected: str) -> None:
    path = _suite_file(tmp_path, name="NAME")
    path.write_text(path.read_text().replace("NAME", name))  # a TOML escape: a raw NUL is invalid TOML
    line = _cli_refuses(["plan", str(path)], f"{path}: {expected}")
    assert "\x00" not in line


def test_rich_markup_in_labels_is_printed_as_is(tmp_path: Path) -> None:
    strategies = [{"name": "scratch", "label": "[/]"}, {"name": "full", "label": "[bold]x"}]
    path = _suite_file(tmp_path, strategies=strategies)
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "[/]" in result.stdout and "[bold]x" in result.stdout


def test_markup_in_labels_on_a_terminal(tmp_path: Path, monkeypatch) -> None:
    import harness.cli as cli

    monkeypatch.setattr(cli, "stdout", cli._Stdout(force_terminal=True, width=200, highlight=False, soft_wrap=True))
    strategies = [{"name": "scratch", "label": "[/]"}, {"name": "full", "label": "[bold]x"}]
    path = _suite_file(tmp_path, strategies=strategies)
    result = runner.invoke(app, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "[/]" in result.stdout and "[bold]x" in result.stdout


def test_an_output_that_is_a_file_exits_2(tmp_path: Path) -> None:
    path = _suite_file(tmp_path)
    a_file = tmp_path / "some_file"
    a_file.write_text("")
    _cli_refuses(
        ["run", str(path), "--output", "/dev/null"], "error: command line: output: Value error, '/dev/null' exists"
    )
    _cli_refuses(["run", str(path), "--output", str(a_file)], f"command line: output: Value error, '{a_file}' exists")
    path.write_text(to_toml({**_one_task(tmp_path), "output": str(a_file)}))
    _cli_refuses(["run", str(path)], f"{path}: output: Value error, '{a_file}' exists and is not a directory")


def test_plan_into_a_closed_pipe_exits_0_quietly(tmp_path: Path) -> None:
    """`bench plan suite.toml | head -1`: the reader goes away; that is no error."""
    path = _suite_file(tmp_path, strategies=[{"name": "scratch"}])
    command = f"{sys.executable} -m harness plan {path} | head -1; exit ${{PIPESTATUS[0]}}"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tiny: 1 cells")
    assert done.stderr == ""
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", "plan", str(path), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # gone before the first write
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""


# --- 7. the command line's own values --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--seeds", "-1"], "--seeds: '-1' is not a comma-separated list of integers from 0 up"),
        (["--seeds", "0,4294967296"], "command line: seeds[1]: Input should be less than or equal to 4294967295"),
        (["--seeds", ","], "--seeds: ',' is not a comma-separated list of integers from 0 up"),
        (["--seeds", "0,,1"], "--seeds: '0,,1' is not a comma-separated list of integers from 0 up"),
        (["--seeds", "1_0"], "--seeds: '1_0' is not a comma-separated list of integers from 0 up"),
        (["--seeds", "+1"], "--seeds: '+1' is not a comma-separated list of integers from 0 up"),
        (["--output", ""], "--output: empty; give a results directory"),
        (["--seeds", "0,0"], "command line: seeds: Value error, seeds must be distinct"),
        (["--device", "tpu"], "command line: device: Value error, allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
    ],
)
def test_command_line_values_are_checked(tmp_path: Path, args: list[str], expected: str) -> None:
    path = _suite_file(tmp_path)
    for command in ("plan", "run"):
        _cli_refuses([command, str(path), *args], expected)
    _cli_refuses(["run", str(path), "--executor", "slurm"], "--executor: unknown executor 'slurm'")


def test_load_suite_reads_what_it_checks(tmp_path: Path, registry) -> None:
    """The same checks through the library entry point (no CLI)."""
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)
    with pytest.raises(SuiteError, match="cannot read the suite file"):
        load_suite(loop, registry)
    with pytest.raises(SuiteError, match="is a directory"):
        load_suite(tmp_path, registry)


# --- an integer for a float is the same value: one cell, one key ------------------------------------


@pytest.mark.parametrize(
    ("strategies", "training", "expected"),
    [
        ([{"name": "full"}], {"lr": [1, 1.0]}, "the sweep settings 'lr=1.0' and 'lr=1.0' make the same cell"),
        ([{"name": "lora", "options": {"dropout": [0, 0.0]}}], {}, "'dropout=0.0' and 'dropout=0.0' make the same"),
        (
            [
                {"name": "lora", "label": "a", "options": {"dropout": 0}},
                {"name": "lora", "label": "b", "options": {"dropout": 0.0}},
            ],
            {},
            "strategies[1].label: 'b' makes the same cells as strategies[0] ('a')",
        ),
    ],
)
def test_an_integer_written_for_a_float_is_the_same_value(tmp_path: Path, registry, strategies, training, expected):
    data = _one_task(tmp_path, strategies=strategies)
    data["training"] = {**data["training"], **training}
    _refused(data, registry, expected, plan=True)


def test_integers_for_floats_give_the_keys_of_floats(tmp_path: Path, registry) -> None:
    def keys(lr: Any, dropout: Any, smoothing: Any, clutter: Any) -> list[str]:
        data = _one_task(tmp_path, strategies=[{"name": "lora", "options": {"dropout": dropout}}])
        data["training"] = {**data["training"], "lr": lr}
        data["tasks"][0]["options"] = {"label_smoothing": smoothing}
        data["tasks"][0]["dataset"]["options"]["clutter"] = clutter
        return [c.key for c in plan_cells(parse_suite(data, "s.toml", registry), registry)]

    assert keys(1, 0, 0, 1) == keys(1.0, 0.0, 0.0, 1.0)
    assert keys([1, 2], [0, 0.5], 0, 0) == keys([1.0, 2.0], [0.0, 0.5], 0.0, 0.0)


def test_a_metric_the_dataset_cannot_give_is_refused(tmp_path: Path, registry) -> None:
    """top5 needs more than five classes (with five it is 1 for any model): refused when the suite loads."""
    data = _one_task(tmp_path)
    data["tasks"][0]["metric"] = "top5"
    data["tasks"][0]["dataset"] = {"name": "shapes", "options": {"shapes": ["circle", "square"], "image_size": 32}}
    _refused(data, registry, "tasks[0].metric: 'top5' needs more than 2 classes; allowed: top1")
    data["tasks"][0]["dataset"]["options"]["shapes"] = ["circle", "square", "triangle", "cross", "ring"]
    _refused(data, registry, "tasks[0].metric: 'top5' needs more than 5 classes; allowed: top1")
    data["tasks"][0]["dataset"]["options"]["shapes"].append("diamond")
    parse_suite(data, registry=registry)  # six classes: fine


def test_a_devkit_metric_needs_its_protocol(tmp_path: Path, registry) -> None:
    data = _one_task(tmp_path)
    data["tasks"][0].update(kind="detection", metric="map_voc07")
    _refused(data, registry, "tasks[0].metric: 'map_voc07' is not reported with these options")
    data["tasks"][0]["options"] = {"metric_protocol": "voc07"}
    parse_suite(data, registry=registry)


def test_exclusions_that_leave_no_cell_are_refused(tmp_path: Path, registry) -> None:
    data = _one_task(tmp_path)
    data["exclude"] = [{"task": data["tasks"][0]["name"]}]
    _refused(data, registry, "exclude: the exclusions leave no cell", plan=True)


def test_plan_looks_at_the_output_given_on_the_command_line(tmp_path: Path) -> None:
    path = _suite_file(tmp_path)
    result = runner.invoke(app, ["plan", str(path), "--output", str(tmp_path / "elsewhere"), "-f", "json"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "elsewhere") in result.stdout


def test_report_and_plot_outputs_that_cannot_be_written_exit_2(tmp_path: Path) -> None:
    results = tmp_path / "results"
    (results / "cells").mkdir(parents=True)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    _cli_refuses(["plot", str(results), "--output", str(a_file)], "--output: ")
    _cli_refuses(["plot", str(results), "--output", str(a_file / "sub")], "is not a directory")
    _cli_refuses(["plot", str(results), "--output", ""], "--output: empty")

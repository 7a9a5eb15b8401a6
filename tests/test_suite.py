"""Suite files: valid ones load with resolved settings; every mistake names the file, the key and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SuiteError
from harness.suite import load_suite
from tests.conftest import tiny_suite


def test_valid_suite_loads_with_overrides(tmp_path: Path, write_suite, registry) -> None:
    data = tiny_suite(tmp_path / "out")
    data["tasks"][0]["training"] = {"lr": 0.5, "epochs": 3}
    data["strategies"][2]["training"] = {"lr": 0.25}
    suite = load_suite(write_suite(data), registry)
    cls, full = suite.tasks[0], suite.strategies[2]
    resolved = suite.training_for(cls, full)
    assert (resolved.lr, resolved.epochs, resolved.batch_size) == (0.25, 3, 8)  # strategy beats task beats default
    assert suite.training_for(cls, suite.strategies[0]).lr == 0.5
    assert suite.training_for(suite.tasks[1], full).epochs == 1


def test_bundled_quickstart_suite_is_valid(registry) -> None:
    suite = load_suite(Path(__file__).parents[1] / "suites" / "quickstart.toml", registry)
    assert {t.kind for t in suite.tasks} == {"classification", "detection", "segmentation"}
    assert suite.baseline == "scratch"


def test_bundled_catalogue_runs_every_builtin_strategy_on_every_task_kind(registry) -> None:
    from harness.grid import plan_cells
    from harness.registry import BUILTIN

    suite = load_suite(Path(__file__).parents[1] / "suites" / "catalogue.toml", registry)
    cells = plan_cells(suite, registry)
    builtin = {e.name for e in registry.all() if e.kind == "strategy" and e.provider == BUILTIN}
    assert {c.settings.strategy.name for c in cells} == builtin
    assert not [c.skip_reason for c in cells if c.skip_reason]
    assert all(c.teacher for c in cells if c.strategy == "distill")


def _error(tmp_path: Path, write_suite, registry, **overrides) -> str:
    data = tiny_suite(tmp_path / "out")
    for dotted, value in overrides.items():
        target = data
        *path, last = dotted.split("__")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is None:
            del target[last]
        else:
            target[last] = value
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(data), registry)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "suite.toml") + ": ")
    return message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"strategies__1__name": "lienar_probe"},
            "strategies[1].name: unknown strategy 'lienar_probe'; allowed: bitfit, discriminative_lr, distill, ema",
        ),
        ({"backbones__0__name": "resnet999"}, "backbones[0].name: unknown backbone 'resnet999'; allowed:"),
        ({"tasks__0__kind": "captioning"}, "tasks[0].kind: unknown task 'captioning'; allowed: classification,"),
        (
            {"tasks__0__dataset": {"name": "nope"}},
            "tasks[0].dataset.name: unknown dataset 'nope'; allowed: ade20k, cifar10, cifar100, cityscapes, coco",
        ),
        ({"training__epochs": "three"}, "training.epochs: Input should be a valid integer"),
        ({"training__lr": -1.0}, "training.lr: Input should be greater than 0"),
        ({"training__optimizer": "lion"}, "training.optimizer: Input should be 'sgd' or 'adamw'"),
        ({"training__batchsize": 4}, "training.batchsize: unknown key; allowed: epochs, max_steps, batch_size"),
        ({"seeds": []}, "seeds: List should have at least 1 item"),
        ({"device": "tpu"}, "device: Value error, allowed: 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"),
        ({"baseline": "nothing"}, "baseline: unknown strategy 'nothing'; allowed: scratch, linear_probe, full"),
        ({"tasks__0__metric": "f1"}, "tasks[0].metric: unknown metric 'f1' for classification; allowed: top1, top5"),
        (
            {"tasks__2__dataset": {"name": "shapes", "options": {"image_size": 4}}},
            "tasks[2].dataset.options.image_size: Input should be greater than or equal to 16",
        ),
        (
            {"tasks__0__dataset": {"name": "shapes", "options": {"shapes": ["circle", "blob"]}}},
            "tasks[0].dataset.options.shapes: Value error, unknown shapes ['blob']",
        ),
        (
            {"tasks__1__options": {"fpn_stages": 9}},
            "tasks[1].options.fpn_stages: Input should be less than or equal to 5",
        ),
        ({"tasks__1__options": {"rpn_size": 9}}, "tasks[1].options.rpn_size: unknown key; allowed: fpn_stages,"),
        ({"backbones__0__weights": "imagenet"}, "backbones[0].weights: unknown weights source 'imagenet'"),
        ({"backbones__0__weights": "pretrain:nowhere"}, "backbones[0].weights: unknown pretraining stage 'nowhere'"),
        ({"executor": "slurm"}, "executor: unknown executor 'slurm'; allowed: processes, ray, sequential"),
        ({"tasks": None}, "tasks: required key is missing"),
        ({"exclude": [{"strategy": "fulll"}]}, "exclude[0].strategy: unknown strategy 'fulll'"),
        ({"strategies": [{"name": "full"}, {"name": "full"}]}, "strategies[1].label: 'full' appears twice"),
    ],
)
def test_mistakes_name_file_key_and_what_is_allowed(tmp_path, write_suite, registry, overrides, expected) -> None:
    assert expected in _error(tmp_path, write_suite, registry, **overrides)


def test_bad_toml_names_the_file_and_line(tmp_path: Path, registry) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nseeds = [0, 1]\nbaseline = \n')
    with pytest.raises(SuiteError, match=r"broken\.toml: invalid TOML: .*line 3"):
        load_suite(path, registry)


def test_missing_file(tmp_path: Path, registry) -> None:
    with pytest.raises(SuiteError, match="no such suite file"):
        load_suite(tmp_path / "absent.toml", registry)

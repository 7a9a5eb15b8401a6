"""The whole strategy catalogue on every task kind, run as a suite: every cell ok, costs that match the promise,
distillation from another cell of the suite, and a rerun that recomputes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.driver import run_suite
from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.registry import Registry
from harness.store import Store, load_results
from harness.suite import parse_suite
from harness.testing import tiny_model
from tests.conftest import tiny_suite

CATALOGUE = [
    {"name": "scratch"},
    {"name": "full"},
    {"name": "linear_probe"},
    {"name": "partial", "options": {"freeze_stages": 2}},
    {"name": "discriminative_lr", "options": {"stage_decay": 0.5}},
    {"name": "gradual_unfreeze", "options": {"every_steps": 1}},
    {"name": "bitfit"},
    {"name": "lora", "options": {"rank": 2, "alpha": 4}},
    {"name": "l2sp"},
    {"name": "distill", "options": {"teacher_backbone": "resnet18", "teacher_strategy": "full"}},
    {"name": "wise_ft"},
    {"name": "ema", "options": {"decay": 0.9}},
    {"name": "swa", "options": {"start": 0.5}},
    {"name": "lp_ft", "training": {"epochs": 2, "max_steps": 4}},  # one probe epoch, one fine-tuning epoch
    {"name": "sam", "options": {"rho": 0.05}},
    {"name": "soup", "options": {"ingredients": ["full", "ema", "sam"]}},
]


DISTILL = next(spec for spec in CATALOGUE if spec["name"] == "distill")


def _expected_trainable(registry: Registry, kind: str, spec: dict) -> int:
    """What the strategy promises to train on a fresh model (gradual unfreezing: new parts + last stage)."""
    _, model, _ = tiny_model(kind)
    strategy = registry.create("strategy", spec["name"], spec.get("options", {}))
    if spec["name"] in ("distill", "lp_ft"):  # lp_ft: everything trains after the probe epoch
        return sum(p.numel() for p in model.parameters())
    strategy.prepare(model)
    if spec["name"] == "gradual_unfreeze":
        strategy.on_step_start(model, 1)  # two steps: the last stage unfreezes at step 1
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def catalogue_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("catalogue")
    data = tiny_suite(out / "results", strategies=CATALOGUE)
    data["training"] = {**data["training"], "max_steps": 2}
    suite = parse_suite(data, "catalogue.toml", Registry(entry_points=False))
    summary = run_suite(suite, Registry(entry_points=False))
    return out / "results", {"summary": summary, "suite": suite}


def test_every_strategy_runs_on_every_task_kind(catalogue_run) -> None:
    results, info = catalogue_run
    frame = load_results(results)
    assert len(frame) == 3 * len(CATALOGUE)
    assert set(frame["status"]) == {"ok"}, frame[frame["status"] != "ok"][["task", "strategy", "reason"]]
    assert info["summary"].statuses["ok"] == len(frame)


def test_trainable_parameters_in_results_are_what_each_strategy_promises(registry, catalogue_run) -> None:
    frame = load_results(catalogue_run[0]).set_index(["task_kind", "strategy"])
    for kind in ("classification", "detection", "segmentation"):
        for spec in CATALOGUE:
            recorded = frame.loc[(kind, spec["name"]), "cost.trainable_params"]
            assert recorded == _expected_trainable(registry, kind, spec), (kind, spec["name"])


def test_batchnorm_policy_is_recorded(catalogue_run) -> None:
    frame = load_results(catalogue_run[0]).drop_duplicates("strategy").set_index("strategy")["batchnorm"]
    assert frame["full"] == "train"
    assert frame["linear_probe"] == frame["lora"] == frame["partial"] == "frozen_parts"


def test_distillation_learns_from_the_teacher_cell_which_runs_first(registry, catalogue_run) -> None:
    results, info = catalogue_run
    cells = plan_cells(info["suite"], registry)
    order = [c.key for c in cells]
    store = Store(results)
    for student in (c for c in cells if c.strategy == "distill"):
        teacher = next(c for c in cells if c.key == student.teacher)
        assert (teacher.task, teacher.strategy, teacher.seed) == (student.task, "full", student.seed)
        assert order.index(teacher.key) < order.index(student.key)
        assert teacher.keep_model and store.model_path(teacher.key).is_file()
        assert student.settings.teacher.key == teacher.key


def test_rerun_recomputes_nothing(registry, catalogue_run) -> None:
    results, info = catalogue_run
    before = {p.name: p.stat().st_mtime_ns for p in (results / "cells").iterdir()}
    summary = run_suite(info["suite"], registry)
    assert summary.reused == summary.total
    assert {p.name: p.stat().st_mtime_ns for p in (results / "cells").iterdir()} == before


def test_a_student_without_its_teacher_is_skipped_with_the_reason(tmp_path: Path, registry) -> None:
    strategies = [{"name": "full", "training": {"lr": [0.1, 0.01]}}, DISTILL]
    suite = parse_suite(tiny_suite(tmp_path, strategies=strategies), "s.toml", registry)
    reasons = {c.skip_reason for c in plan_cells(suite, registry) if c.strategy == "distill"}
    assert reasons == {"teacher resnet18 / full has 2 settings (a teacher needs one)"}
    excluded = tiny_suite(tmp_path, strategies=[{"name": "full"}, DISTILL], exclude=[{"strategy": "full"}])
    reasons = {c.skip_reason for c in plan_cells(parse_suite(excluded, "s.toml", registry), registry)}
    assert reasons == {"teacher resnet18 / full is excluded"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            {"teacher_backbone": "r50"},
            "strategies[1].options.teacher_backbone: unknown backbone 'r50'; allowed: resnet18",
        ),
        (
            {"teacher_backbone": "resnet18", "teacher_strategy": "distill"},
            "strategies[1].options.teacher_strategy: 'distill' learns from a teacher itself",
        ),
        (
            {"teacher_backbone": "resnet18", "teacher_checkpoint": "/no/such.pt"},
            "strategies[1].options.teacher_checkpoint: no such file: /no/such.pt",
        ),
    ],
)
def test_teacher_mistakes_are_suite_errors(tmp_path: Path, registry, options, expected: str) -> None:
    data = tiny_suite(tmp_path, strategies=[{"name": "full"}, {"name": "distill", "options": options}])
    with pytest.raises(SuiteError) as error:
        parse_suite(data, "s.toml", registry)
    assert str(error.value).startswith(f"s.toml: {expected}")


def test_distill_from_a_checkpoint_file(tmp_path: Path, registry) -> None:
    import torch

    _, teacher, _ = tiny_model("classification", seed=3)
    good, wrong = tmp_path / "teacher.pt", tmp_path / "wrong.pt"
    torch.save(teacher.state_dict(), good)
    torch.save({"head.2.weight": torch.zeros(3, 3)}, wrong)
    strategies = [
        {
            "name": "distill",
            "label": "from-file",
            "options": {"teacher_backbone": "resnet18", "teacher_checkpoint": str(good)},
        },
        {
            "name": "distill",
            "label": "bad-file",
            "options": {"teacher_backbone": "resnet18", "teacher_checkpoint": str(wrong)},
        },
    ]
    data = tiny_suite(tmp_path / "out", strategies=strategies)
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data["training"], "max_steps": 2}
    suite = parse_suite(data, "s.toml", registry)
    cells = plan_cells(suite, registry)
    assert cells[0].settings.strategy.teacher_checkpoint.startswith(f"file:{good}#")
    run_suite(suite, registry)
    frame = load_results(tmp_path / "out").set_index("strategy")
    assert frame.loc["from-file", "status"] == "ok"
    assert frame.loc["bad-file", "status"] == "failed"
    assert frame.loc["bad-file", "reason"].startswith(f"BenchError: {wrong} is not a resnet18 classification model")


def test_a_plugin_with_its_own_teacher_option_names_distills_from_a_checkpoint(tmp_path: Path) -> None:
    """The checkpoint's backbone comes from the strategy's `teacher()`, not from distill's option name."""
    import torch
    from bench_plugins.strategies.distill import Distill, DistillOptions

    from harness import TeacherRef, hookimpl
    from harness.registry import Registry

    class FromFileOptions(DistillOptions):
        teacher_backbone: str = "unused"
        source_backbone: str
        source_file: str

    class FromFile(Distill):
        """Distill from a file named by options of its own."""

        name = "from_file"
        Options = FromFileOptions
        options: FromFileOptions

        def teacher(self) -> TeacherRef:
            return TeacherRef(self.options.source_backbone, checkpoint=self.options.source_file)

    class Plugin:
        @hookimpl
        def bench_strategies(self) -> list[type[Distill]]:
            return [FromFile]

    registry = Registry(plugins=[(Plugin(), "from-file-plugin")], entry_points=False)
    _, teacher, _ = tiny_model("classification", seed=3)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    options = {"source_backbone": "resnet18", "source_file": str(tmp_path / "teacher.pt")}
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "from_file", "options": options}])
    data["tasks"] = data["tasks"][:1]
    data["training"] = {**data["training"], "max_steps": 2}
    run_suite(parse_suite(data, "s.toml", registry), registry)
    frame = load_results(tmp_path / "out")
    assert frame["status"].tolist() == ["ok"], frame["reason"].tolist()

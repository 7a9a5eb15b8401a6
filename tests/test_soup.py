"""Model soups: cells that use the trained models of several other cells (`Strategy.inputs`), on every task kind.

Planning links a soup to its ingredients (every setting of a swept label, at its own seed or every
seed), runs them first and keeps their models; the uniform soup is the mean of their weights with
BatchNorm recomputed, the greedy soup never scores below its best ingredient on validation; the
report adds the ingredients' device-hours to the soup's for its ROI.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.assembly import Parts, assemble
from harness.components import CellInput, FitOutcome, TaskModel
from harness.devices import setup_for
from harness.driver import run_suite
from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.registry import Registry
from harness.report import build_report
from harness.settings import Training
from harness.store import Store, load_results
from harness.suite import parse_suite
from harness.testing import KINDS, brief_spec, tiny_model
from harness.training import TrainingLoop
from harness.weight_averaging import batchnorm_layers
from tests.conftest import tiny_suite

SWEPT_FULL = {"name": "full", "training": {"lr": [1e-3, 3e-3]}}
UNIFORM = {"name": "soup", "label": "soup-uniform", "options": {"method": "uniform"}}
GREEDY = {"name": "soup", "label": "soup-greedy", "options": {"method": "greedy"}}


def soup_of(kind: str, ingredients: list[TaskModel], **options: Any) -> tuple[FitOutcome, TrainingLoop]:
    """A soup cell of `kind` whose inputs are `ingredients` (each loaded as a fresh copy), made by its own `fit`."""
    registry = Registry(entry_points=False)
    spec = brief_spec(kind, "resnet18", Training(batch_size=4, epochs=1, threads=2), registry, "soup")
    strategy = registry.create("strategy", "soup", options)
    parts = Parts.of(spec, registry, strategy)
    cell = assemble(spec, parts, setup_for("cpu", spec.training, parts.task), registry=registry)
    inputs = tuple(
        CellInput(f"key{i}", "full", {}, 0, lambda m=m: copy.deepcopy(m).eval()) for i, m in enumerate(ingredients)
    )
    cell = replace(cell, context=replace(cell.context, inputs=inputs))
    loop = TrainingLoop(cell)
    return strategy.fit(loop), loop


def plan(data: dict[str, Any], registry: Registry) -> list:
    return plan_cells(parse_suite(data, "s.toml", registry), registry)


def ingredients(kind: str, count: int = 3) -> list[TaskModel]:
    """Models of one architecture with different weights (initialised from different seeds)."""
    return [tiny_model(kind, seed=seed)[1] for seed in range(1, count + 1)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_uniform_soup_is_the_mean_of_its_ingredients_weights(kind: str) -> None:
    models = ingredients(kind)
    frozen, _ = soup_of(kind, models, method="uniform", batchnorm="freeze")
    assert frozen.model is not None and frozen.steps == 0
    states = [m.state_dict() for m in models]
    for name, tensor in frozen.model.state_dict().items():
        if tensor.is_floating_point():  # BatchNorm statistics too: the policy keeps them
            expected = torch.stack([s[name] for s in states]).mean(0)
            torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6, msg=name)
        else:
            assert torch.equal(tensor, states[0][name]), name
    # with the default policy the averaged model's BatchNorm statistics are recomputed on the training split
    recomputed, _ = soup_of(kind, models, method="uniform")
    assert recomputed.model is not None
    layers = dict(recomputed.model.named_modules())
    bn = [n for n, m in layers.items() if m in set(batchnorm_layers(recomputed.model))]
    for name in bn:
        mean = torch.stack([s[f"{name}.running_mean"] for s in states]).mean(0)
        assert not torch.allclose(layers[name].running_mean, mean), name  # type: ignore[arg-type]
    params = dict(recomputed.model.named_parameters())
    for name, tensor in params.items():
        torch.testing.assert_close(tensor, torch.stack([s[name] for s in states]).mean(0), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_a_greedy_soup_scores_at_least_its_best_ingredient_on_validation(kind: str) -> None:
    outcome, loop = soup_of(kind, ingredients(kind), method="greedy")
    soup = loop.notes["soup"]
    scores = [i["val"] for i in soup["ingredients"]]
    assert all(s is not None for s in scores)
    best = max(range(len(scores)), key=lambda i: scores[i])
    assert soup["ingredients"][best]["kept"]  # the best ingredient starts the soup
    assert soup["kept"] == sum(i["kept"] for i in soup["ingredients"]) >= 1
    assert len(outcome.curve) == 1 and outcome.curve[0]["train_loss"] is None
    assert outcome.curve[0]["val"][loop.metric] >= scores[best]
    assert outcome.metrics  # tested like any cell


def test_ingredients_of_other_architectures_are_refused() -> None:
    plain = tiny_model("classification")[1]
    other = copy.deepcopy(plain)
    other.adapter = torch.nn.Parameter(torch.zeros(2))  # e.g. a module a strategy added
    with pytest.raises(Exception, match="a soup averages models of one architecture"):
        soup_of("classification", [plain, other], method="uniform")


def test_a_soup_is_planned_after_every_setting_of_its_ingredients_at_its_seed(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path, seeds=[0, 1], strategies=[SWEPT_FULL, GREEDY])
    cells = plan_cells(parse_suite(data, "s.toml", registry), registry)
    order = [c.key for c in cells]
    for soup in (c for c in cells if c.strategy == "soup-greedy"):
        used = [c for c in cells if c.key in soup.inputs]
        assert {(c.task, c.strategy, c.seed) for c in used} == {(soup.task, "full", soup.seed)}
        assert {c.setting for c in used} == {"lr=0.001", "lr=0.003"}
        assert all(c.keep_model and order.index(c.key) < order.index(soup.key) for c in used)
        assert [i.key for i in soup.settings.inputs] == list(soup.inputs)
    # the ingredients' keys do not depend on the soup; the soup's on its ingredients
    alone = plan_cells(
        parse_suite(tiny_suite(tmp_path, seeds=[0, 1], strategies=[SWEPT_FULL]), "s.toml", registry), registry
    )
    assert {c.key for c in alone} == {c.key for c in cells if c.strategy == "full"}
    slower = tiny_suite(tmp_path, seeds=[0, 1], strategies=[{**SWEPT_FULL, "training": {"lr": [1e-3, 1e-2]}}, GREEDY])
    changed = plan_cells(parse_suite(slower, "s.toml", registry), registry)
    assert not {c.key for c in changed if c.strategy == "soup-greedy"} & {c.key for c in cells}


def test_a_soup_over_all_seeds_uses_the_ingredients_of_every_seed(tmp_path: Path, registry) -> None:
    soup = {"name": "soup", "options": {"seeds": "all", "ingredients": ["full"]}}
    cells = plan_cells(
        parse_suite(tiny_suite(tmp_path, seeds=[0, 1], strategies=[{"name": "full"}, soup]), "s.toml", registry),
        registry,
    )
    full = {(c.task, c.seed): c.key for c in cells if c.strategy == "full"}
    for c in (c for c in cells if c.strategy == "soup"):
        assert list(c.inputs) == [full[c.task, 0], full[c.task, 1]]


def test_a_soup_whose_ingredient_is_excluded_is_skipped_with_the_reason(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path, strategies=[{"name": "full"}, GREEDY], exclude=[{"task": "det", "strategy": "full"}])
    reasons = {c.task: c.skip_reason for c in plan_cells(parse_suite(data, "s.toml", registry), registry)}
    assert (
        reasons["det"]
        == "input resnet18 / full / seed 0 is not in the suite (excluded, or not one of its seeds or labels)"
    )
    assert reasons["cls"] is None


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"ingredients": ["ful"]}, "strategies[1].options.ingredients: unknown strategy 'ful'; allowed: full, soup"),
        ({"ingredients": ["soup"]}, "strategies[1].options.ingredients: 'soup' is this strategy itself"),
        ({"ingredients": []}, "strategies[1].options.ingredients"),
    ],
)
def test_soup_mistakes_are_suite_errors(tmp_path: Path, registry, options: dict, expected: str) -> None:
    data = tiny_suite(tmp_path, strategies=[{"name": "full"}, {"name": "soup", "options": options}])
    with pytest.raises(SuiteError) as error:
        parse_suite(data, "s.toml", registry)
    assert expected in str(error.value)


@pytest.fixture(scope="module")
def soup_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("soups") / "results"
    data = tiny_suite(out, strategies=[{"name": "scratch"}, SWEPT_FULL, UNIFORM, GREEDY])
    data["training"] = {**data["training"], "max_steps": 2}
    run_suite(parse_suite(data, "soups.toml", Registry(entry_points=False)), Registry(entry_points=False))
    return out


def test_soups_run_on_every_task_kind_from_the_kept_models(soup_run: Path) -> None:
    frame = load_results(soup_run)
    assert set(frame["status"]) == {"ok"}, frame[frame["status"] != "ok"][["task", "strategy", "reason"]]
    store = Store(soup_run)
    for path in (soup_run / "cells").glob("*.json"):
        result = json.loads(path.read_text())
        if not result["strategy"].startswith("soup"):
            continue
        used = [i["key"] for i in result["settings"]["inputs"]]
        assert len(used) == 2 and all(store.model_path(key).is_file() for key in used)
        ingredients = [store.load(key) for key in used]
        assert result["cost"]["upstream_seconds"] == pytest.approx(sum(r.cost.train_seconds for r in ingredients))
        assert [i["key"] for i in result["notes"]["soup"]["ingredients"]] == used
        if result["strategy"] == "soup-uniform":
            assert result["notes"]["soup"]["kept"] == 2


def test_the_report_counts_the_ingredients_training_in_a_soups_roi(soup_run: Path, tmp_path: Path) -> None:
    # two training steps score near chance: without the trivial scores every row keeps its ROI
    shutil.copytree(soup_run, tmp_path / "results")
    for path in (tmp_path / "results" / "cells").glob("*.json"):
        path.write_text(json.dumps({**json.loads(path.read_text()), "trivial": {}}))
    report = build_report(tmp_path / "results")
    for table in report.tables:
        rows = table.rows.set_index("strategy")
        soup, full = rows.loc["soup-greedy"], rows.loc["full"]
        assert soup["upstream_device_hours"] > 0 and full["upstream_device_hours"] == 0
        hours = soup["train_device_hours"] + soup["upstream_device_hours"]
        assert soup["roi_per_device_hour"] == pytest.approx(soup["gain"] / hours)
        assert full["roi_per_device_hour"] == pytest.approx(full["gain"] / full["train_device_hours"])
        assert any("soup ingredients" in note and "soup-greedy" in note for note in table.notes)


def test_a_rerun_recomputes_no_soup(soup_run: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in (soup_run / "cells").iterdir()}
    data = tiny_suite(soup_run, strategies=[{"name": "scratch"}, SWEPT_FULL, UNIFORM, GREEDY])
    data["training"] = {**data["training"], "max_steps": 2}
    summary = run_suite(parse_suite(data, "soups.toml", Registry(entry_points=False)), Registry(entry_points=False))
    assert summary.reused == summary.total
    assert {p.name: p.stat().st_mtime_ns for p in (soup_run / "cells").iterdir()} == before

"""The classification task's macro F1, balanced accuracy, macro AUROC and ECE: equal to scikit-learn's (and
to a numpy ECE), through the task's own `evaluate_per_image`; the majority-class predictor's values; a
suite ranks by them, the report reads ECE as lower-is-better."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from bench_plugins.strategies.full import Full
from bench_plugins.tasks.classification import Classification
from bench_plugins.tasks.common import ConstantScores, class_counts
from sklearn.dummy import DummyClassifier
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score
from typer.testing import CliRunner

from harness.assembly import Parts, assemble
from harness.cli import create_app
from harness.devices import setup_for
from harness.errors import SuiteError
from harness.grid import plan_cells
from harness.report import build_report
from harness.result import CellResult, Cost
from harness.settings import BackboneSettings, CellSpec, DatasetSettings, StrategySettings, TaskSettings, Training
from harness.store import Store
from harness.suite import parse_suite
from harness.testing import brief_spec
from harness.training import TrainingLoop, evaluate
from tests.conftest import tiny_suite, to_toml

NEW = ("f1_macro", "balanced_accuracy", "auroc_macro", "ece")


class Replay(torch.nn.Module):
    """A stand-in model returning fixed logits, a batch's worth per call, in order."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.start = logits, 0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.start : self.start + len(images)]
        self.start += len(images)
        return out


def _evaluate(logits: torch.Tensor, labels: torch.Tensor, classes: int, batch: int = 7) -> Any:
    chunks = [labels[i : i + batch] for i in range(0, len(labels), batch)]
    batches = ((torch.zeros(len(chunk), 1), chunk) for chunk in chunks)
    return Classification().evaluate_per_image(Replay(logits), batches, classes)


def reference_ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """15 equal-width bins of the top-1 confidence; the bins' |accuracy - confidence| weighted by their share."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    return float(
        sum(
            abs(correct[which == b].mean() - confidence[which == b].mean()) * np.mean(which == b)
            for b in range(bins)
            if (which == b).any()
        )
    )


def reference_auroc(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> float:
    """scikit-learn's one-vs-rest macro AUROC; where it takes no such input (two classes, absent classes),
    its definition: the mean of scikit-learn's AUROC of each class in the labels against the rest.

    (With two classes that is the binary AUROC of either column, up to the ties float32 makes where the
    softmax saturates, which differ between the two columns.)"""
    present = sorted(set(labels.tolist()))
    if len(present) == classes > 2:
        every = list(range(classes))
        return float(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=every))
    return float(np.mean([roc_auc_score(labels == c, probabilities[:, c]) for c in present]))


def reference(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> dict[str, float]:
    predicted = probabilities.argmax(axis=1)
    with warnings.catch_warnings():  # sklearn warns of predicted classes absent from the labels
        warnings.simplefilter("ignore")
        return {
            "f1_macro": float(f1_score(labels, predicted, average="macro")),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
            "auroc_macro": reference_auroc(probabilities, labels, classes),
            "ece": reference_ece(probabilities, labels),
        }


#: (seed, classes, how many of the last classes never occur in the labels)
CASES = [(seed, classes, absent) for seed in range(4) for classes, absent in ((2, 0), (3, 0), (10, 0), (10, 3))]


@pytest.mark.parametrize(("seed", "classes", "absent"), CASES)
def test_each_metric_equals_scikit_learn_and_a_numpy_ece(seed: int, classes: int, absent: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    images = 60 + 17 * seed
    labels = torch.randint(0, classes - absent, (images,), generator=generator)  # the last `absent` never occur
    labels[: classes - absent] = torch.arange(classes - absent)  # every other class at least once
    logits = torch.randn(images, classes, generator=generator) * (1 + seed)
    metrics, per_image = _evaluate(logits, labels, classes)
    expected = reference(logits.softmax(dim=1).double().numpy(), labels.numpy(), classes)
    for name in NEW:
        assert metrics[name] == pytest.approx(expected[name], abs=1e-6), name
    if absent:  # an absent class predicted is counted by F1 (as sklearn does), not by balanced accuracy
        assert (logits.argmax(dim=1) >= classes - absent).any()
    assert set(per_image) == {m for m in metrics if m.startswith("top")}  # none of these is a mean over images
    assert list(metrics) == list(Classification().reported_metrics(classes))


@pytest.mark.filterwarnings("ignore:The ``compute`` method of metric MulticlassAccuracy")  # top-k of no image
def test_one_class_in_the_labels_leaves_auroc_undefined_and_no_labels_every_new_metric() -> None:
    logits = torch.randn(12, 4, generator=torch.Generator().manual_seed(0))
    metrics, _ = _evaluate(logits, torch.full((12,), 2), 4)
    assert metrics["auroc_macro"] is None and metrics["balanced_accuracy"] == pytest.approx(
        float((logits.argmax(dim=1) == 2).float().mean())
    )
    empty, _ = _evaluate(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4)
    assert all(empty[name] is None for name in NEW)


@pytest.mark.parametrize(
    "labels", [[0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9], [3, 3, 1, 1, 0, 5, 5, 7, 7, 7, 2], [5, 5, 2, 2, 1, 9]]
)
def test_the_trivial_predictor_is_scikit_learns_most_frequent_dummy(labels: list[int]) -> None:
    """The majority class (ties: the lowest index) with probability 1, scored by the same metric code."""
    classes = 10
    y = np.array(labels)
    dummy = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y), 1)), y)
    probabilities = np.zeros((len(y), classes))
    probabilities[:, dummy.classes_] = dummy.predict_proba(np.zeros((len(y), 1)))
    target = torch.tensor(labels)
    trivial = Classification().trivial(iter([(torch.zeros(len(y), 1), target)]), classes)
    expected = reference(probabilities, y, classes)
    for name in NEW:
        if name == "auroc_macro":
            assert trivial[name] == 0.5  # a constant score ranks nothing
        else:
            assert trivial[name] == pytest.approx(expected[name], abs=1e-6), name
    assert trivial["ece"] == pytest.approx(1 - np.bincount(y).max() / len(y))
    assert trivial["top1"] == pytest.approx(float(np.mean(dummy.predict(np.zeros((len(y), 1))) == y)))
    # top-k exactly as when the constant scores were the class counts themselves
    counts = ConstantScores(class_counts([target], classes))
    before = Classification().evaluate(counts, iter([(torch.zeros(len(y), 1), target)]), classes)
    assert (trivial["top1"], trivial["top5"]) == (before["top1"], before["top5"])


# ---- ranking by them ----


def _classification_suite(tmp_path: Path, **task: Any) -> dict[str, Any]:
    data = tiny_suite(tmp_path / "out")
    data["tasks"] = [{**data["tasks"][0], **task}]
    return data


@pytest.mark.parametrize("metric", NEW)
def test_a_suite_ranks_by_a_new_metric(tmp_path: Path, registry, metric: str) -> None:
    cells = plan_cells(parse_suite(_classification_suite(tmp_path, metric=metric), registry=registry), registry)
    assert cells and {c.settings.task.metric for c in cells} == {metric}


def test_an_unknown_metric_is_refused_with_exit_2(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(_classification_suite(tmp_path, metric="f1")))
    result = CliRunner().invoke(create_app(), ["plan", str(suite)])
    assert result.exit_code == 2
    assert "tasks[0].metric: unknown metric 'f1' for classification; allowed: top1, top5, f1_macro" in result.output


def _cell(key: str, strategy: str, seed: int, ece: float, seconds: float = 100.0) -> CellResult:
    hits = 60 + seed  # of 100 test images
    return CellResult(
        key, "ok", "cls", "resnet18", strategy, seed, {"task": {"kind": "classification", "metric": "ece"}},
        metrics={"top1": hits / 100, "ece": ece}, per_image={"top1": [1.0] * hits + [0.0] * (100 - hits)},
        lower_is_better=["ece"], trivial={"top1": 0.2, "ece": 0.5}, trivial_predictor="majority class",
        cost=Cost(train_seconds=seconds, trainable_params=10, total_params=100, device_name="cpu"),
    )  # fmt: skip


def test_the_report_reads_ece_as_lower_is_better(tmp_path: Path) -> None:
    cells = [
        *(_cell(f"s{i}", "scratch", i, 0.30 + 0.01 * i) for i in range(3)),
        *(_cell(f"f{i}", "full", i, 0.10 + 0.01 * i, seconds=50.0) for i in range(3)),  # better and cheaper
        *(_cell(f"p{i}", "probe", i, 0.55 + 0.01 * i) for i in range(3)),  # worse than the trivial predictor
    ]
    store = Store(tmp_path)
    for cell in cells:
        store.save(cell)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": [c.key for c in cells]})
    report = build_report(tmp_path)
    (table,) = report.tables
    rows = table.rows.set_index("strategy")
    assert table.metric == "ece" and table.lower_is_better
    assert set(rows["ci_method"]) == {"t"}  # no per-image ece: the interval is over seeds
    assert rows.loc["full", "gain"] == pytest.approx(0.20) and rows.loc["full", "significant"]  # 0.30 - 0.10
    assert rows.loc["full", "gain_ci_low"] > 0 and rows.loc["full", "roi_per_device_hour"] > 0
    assert rows.loc["full", "above_trivial"] is True and rows.loc["probe", "above_trivial"] is False
    assert rows.loc["full", "pareto"] and not rows.loc["scratch", "pareto"]
    summary = report.summary.set_index("strategy")
    assert summary.loc["full", "mean_rank"] == 1 and summary.loc["scratch", "mean_rank"] == 2
    assert any("ece: lower is better" in note for note in table.notes)
    assert list(build_report(tmp_path, sort="metric").tables[0].rows["strategy"]) == ["full", "scratch", "probe"]
    top1 = build_report(tmp_path, metric="top1").tables[0]  # the other metrics of the same cells: higher is better
    assert not top1.lower_is_better and top1.rows.set_index("strategy").loc["full", "ci_method"] == "bootstrap"


# ---- select_epoch ----


def test_best_val_is_refused_for_a_strategy_that_makes_its_model_after_the_last_epoch(tmp_path: Path, registry) -> None:
    data = tiny_suite(tmp_path / "out", strategies=[{"name": "full"}, {"name": "swa"}])
    data["tasks"] = data["tasks"][:1]
    data["strategies"][1]["training"] = {"select_epoch": "best_val"}
    with pytest.raises(SuiteError, match=r"strategies\[1\]\.training\.select_epoch: 'best_val' would test an earlier"):
        parse_suite(data, registry=registry)
    data["strategies"][1]["training"] = {}
    data["training"]["select_epoch"] = "best_val"
    suite = tmp_path / "suite.toml"
    suite.write_text(to_toml(data))
    result = CliRunner().invoke(create_app(), ["plan", str(suite)])
    assert result.exit_code == 2
    assert f"{suite}: training.select_epoch: 'best_val' would test an earlier epoch's model" in result.output
    data["strategies"] = data["strategies"][:1]  # full: its model is the one trained
    (cell,) = plan_cells(parse_suite(data, registry=registry), registry)
    assert cell.settings.as_json()["training"]["select_epoch"] == "best_val"


def test_select_epoch_at_its_default_leaves_the_cell_key_unchanged(tmp_path: Path, registry) -> None:
    base = brief_spec("classification", "resnet18", Training(), registry)
    assert "select_epoch" not in base.as_json()["training"]
    last = base.model_copy(update={"training": Training(select_epoch="last")})
    best = base.model_copy(update={"training": Training(select_epoch="best_val")})
    assert last.key == base.key != best.key and best.as_json()["training"]["select_epoch"] == "best_val"
    data = _classification_suite(tmp_path)
    keys = [c.key for c in plan_cells(parse_suite(data, registry=registry), registry)]
    data["training"]["select_epoch"] = "last"
    assert [c.key for c in plan_cells(parse_suite(data, registry=registry), registry)] == keys


class ZeroHeadAfterFirstEpoch(Full):
    """`full`, its head zeroed at the end of the first epoch: that epoch's model predicts the uniform
    distribution, whose ECE on the balanced `shapes` validation split is 0, which no later epoch reaches.
    Keeps the state of every epoch's validated model."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[dict[str, torch.Tensor]] = []

    def on_epoch_end(self, model: Any, epoch: int) -> None:
        if epoch == 0:
            with torch.no_grad():
                model.head[-1].weight.zero_()
                model.head[-1].bias.zero_()
        self.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def _train(registry: Any, select_epoch: str) -> tuple[TrainingLoop, Any, list[dict[str, torch.Tensor]]]:
    """Three epochs of a tiny classification cell ranked by ECE (lower is better)."""
    training = Training(epochs=3, batch_size=8, lr=0.1, momentum=0.0, weight_decay=0.0, schedule="constant",
                        warmup_fraction=0.0, select_epoch=select_epoch)  # fmt: skip
    data = DatasetSettings(name="shapes", options={"image_size": 32, "train": 16, "val": 10, "test": 10})
    spec = CellSpec(
        task=TaskSettings(kind="classification", dataset=data, metric="ece"),
        backbone=BackboneSettings(name="resnet18"), strategy=StrategySettings(name="full"), training=training, seed=0,
    )  # fmt: skip
    strategy = ZeroHeadAfterFirstEpoch()
    parts = Parts.of(spec, registry, strategy)
    loop = TrainingLoop(assemble(spec, parts, setup_for("cpu", training, parts.task), registry=registry))
    return loop, strategy.fit(loop), strategy.states


def _tested(loop: TrainingLoop, state: dict[str, torch.Tensor]) -> dict[str, float | None]:
    loop.model.load_state_dict(state)
    return evaluate(loop.model, loop.task, loop.loaders["test"], loop.setup, loop.cell.num_classes)


def test_best_val_tests_the_model_of_the_best_validation_epoch(registry) -> None:
    loop, best, states = _train(registry, "best_val")
    assert [c["epoch"] for c in best.curve] == [1, 2, 3] and len(states) == 3
    # lower is better: the first epoch's ECE of 0 is the best, though every later one is higher
    assert best.best["epoch"] == 1 and best.best["value"] == pytest.approx(0.0, abs=1e-7)
    assert all(c["val"]["ece"] > best.best["value"] for c in best.curve[1:])
    assert loop.notes["select_epoch"] == "test metrics are from epoch 1 (best validation ece)"
    assert best.metrics == _tested(loop, states[0])
    last_loop, last, last_states = _train(registry, "last")
    assert [c["val"] for c in last.curve] == [c["val"] for c in best.curve]  # the same training
    assert "select_epoch" not in last_loop.notes
    assert last.metrics == _tested(last_loop, last_states[-1]) and last.metrics != best.metrics

"""The cached linear probe: the same batches and the same result as the uncached one, and the
cache used only where nothing in the backbone can change between epochs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.driver import run_suite
from harness.registry import Registry
from harness.store import Store
from harness.suite import parse_suite
from tests.conftest import tiny_suite


def _results(tmp_path: Path, registry: Registry, strategies: list[dict[str, Any]], task: int = 0) -> dict[str, Any]:
    data = tiny_suite(tmp_path / "out", strategies=strategies)
    data["tasks"] = [data["tasks"][task]]
    data["training"] = {"epochs": 3, "batch_size": 4, "optimizer": "sgd", "lr": 0.05, "threads": 2}
    summary = run_suite(parse_suite(data, registry=registry), registry)
    return {r.strategy: r for r in Store(summary.output).results()}


def test_a_cached_probe_reaches_the_same_result_as_the_uncached_one(tmp_path: Path, registry: Registry) -> None:
    results = _results(
        tmp_path,
        registry,
        [
            {"name": "linear_probe", "label": "cached"},
            {"name": "linear_probe", "label": "uncached", "options": {"cache_features": False}},
        ],
    )
    cached, uncached = results["cached"], results["uncached"]
    assert (cached.status, uncached.status) == ("ok", "ok")
    assert cached.notes == {"feature_cache": "used"} and uncached.notes == {"feature_cache": "off"}
    assert cached.metrics == uncached.metrics  # test top-1 and top-5: equal on the CPU
    assert [c["val"] for c in cached.curve] == [c["val"] for c in uncached.curve]
    # the same batches in the same order: the training losses agree to float rounding
    for a, b in zip(cached.curve, uncached.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert cached.cost.train_steps == uncached.cost.train_steps == 3 * 4
    assert cached.cost.train_samples == uncached.cost.train_samples
    assert cached.cost.trainable_params == uncached.cost.trainable_params
    # the probe learned something: its loss fell
    assert cached.curve[-1]["train_loss"] < cached.curve[0]["train_loss"]


@pytest.mark.parametrize(
    ("options", "task", "why"),
    [
        ({"batchnorm": "train"}, 0, "not used: backbone layers behave differently in training (stages.0.1"),
        ({}, 1, "not used: Faster R-CNN resizes each image inside the model"),
        ({}, 2, "not used: DeepLabV3 upsamples the head's logits"),
    ],
)
def test_the_cache_is_not_used_where_it_could_change_the_result(
    tmp_path: Path, registry: Registry, options: dict[str, Any], task: int, why: str
) -> None:
    results = _results(tmp_path, registry, [{"name": "linear_probe", "options": options}], task)
    result = results["linear_probe"]
    assert result.status == "ok", result.reason
    assert result.notes["feature_cache"].startswith(why)


def test_the_cache_is_not_used_on_a_randomly_augmented_split(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench_plugins.datasets.shapes import Shapes

    monkeypatch.setattr(Shapes, "deterministic", lambda self, kind, split: False)
    result = _results(tmp_path, registry, [{"name": "linear_probe"}])["linear_probe"]
    why = "not used: the training split is augmented at random (e.g. the dataset's `augment`)"
    assert result.notes["feature_cache"] == why

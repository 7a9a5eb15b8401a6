"""Every built-in backbone works inside every task: one training step and an evaluation."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import TINY_DETECTION

BACKBONES = ["resnet18", "resnet50", "mobilenet_v3_large"]
TASKS = {"classification": {}, "detection": TINY_DETECTION, "segmentation": {}}


@pytest.mark.parametrize("kind", list(TASKS))
@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_in_task_trains_and_evaluates(registry, name: str, kind: str) -> None:
    torch.manual_seed(0)
    task = registry.create("task", kind, TASKS[kind])
    backbone_plugin = registry.create("backbone", name)
    assert task.check(backbone_plugin) is None
    dataset = registry.create("dataset", "shapes", {"image_size": 32})
    classes = dataset.class_names(kind)
    model = task.build_model(backbone_plugin.build(task.output_stride()), len(classes))
    assert {n for n, _ in model.named_parameters()} == {
        *(f"backbone.{n}" for n, _ in model.backbone.named_parameters()),
        *(f"head.{n}" for n, _ in model.head.named_parameters()),
    }
    split = dataset.load(kind, "train")
    batch = task.collate([split[i] for i in range(2)])
    model.train()
    loss = task.loss(model, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.inference_mode():
        metrics = task.evaluate(model, iter([batch]), len(classes))
    assert set(metrics) <= set(task.metrics) and metrics
    assert all(v is None or 0.0 <= v <= 1.0 for v in metrics.values())  # None: undefined here (no large boxes)

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


def test_the_default_segmentation_head_is_torchvisions_deeplab_head() -> None:
    """Same modules, same parameter names and shapes, and the same output from the same weights."""
    from bench_plugins.tasks.segmentation import deeplab_head
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead

    ours, theirs = deeplab_head(512, 6).eval(), DeepLabHead(512, 6).eval()

    def layout(module: torch.nn.Module) -> list[tuple[str, torch.Size]]:
        return [(name, tensor.shape) for name, tensor in module.state_dict().items()]

    assert layout(ours) == layout(theirs)
    ours.load_state_dict(theirs.state_dict())
    features = torch.rand(2, 512, 8, 8)
    with torch.inference_mode():
        assert torch.equal(ours(features), theirs(features))


def test_segmentation_head_width_and_rates_are_options(registry) -> None:
    task = registry.create("task", "segmentation", {"head_channels": 32, "atrous_rates": [1, 2, 3]})
    model = task.build_model(registry.create("backbone", "resnet18").build(16), 4)
    aspp = model.head[0]
    assert aspp.project[0].out_channels == 32
    assert [branch[0].dilation for branch in list(aspp.convs)[1:4]] == [(1, 1), (2, 2), (3, 3)]
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 4, 64, 64)

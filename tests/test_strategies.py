"""Each strategy trains exactly the parameters it promises, on every task kind; everything else stays bit-identical."""

from __future__ import annotations

import pytest
import torch

from harness.suite import Training
from harness.training import build_optimizer
from tests.conftest import TINY_DETECTION

TASK_OPTIONS = {"classification": {}, "detection": TINY_DETECTION, "segmentation": {}}


def _model_and_batch(registry, kind: str):
    torch.manual_seed(0)
    task = registry.create("task", kind, TASK_OPTIONS[kind])
    dataset = registry.create("dataset", "shapes", {"image_size": 32, "train": 4})
    backbone = registry.create("backbone", "resnet18").build(task.output_stride())
    model = task.build_model(backbone, len(dataset.class_names(kind)))
    split = dataset.load(kind, "train")
    batch = task.collate([split[i] for i in range(4)])
    return task, model, batch


def _train_steps(registry, kind: str, strategy_name: str, steps: int = 2):
    task, model, batch = _model_and_batch(registry, kind)
    strategy = registry.create("strategy", strategy_name)
    groups = strategy.prepare(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(groups, Training(optimizer="sgd", lr=0.1, momentum=0.0, weight_decay=0.0))
    for _ in range(steps):
        model.train()
        strategy.train_mode(model)
        loss = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return model, changed, optimizer


def _names(model, part: str, params_only: bool = True) -> set[str]:
    module = getattr(model, part)
    names = {n for n, _ in module.named_parameters()} if params_only else set(module.state_dict())
    return {f"{part}.{n}" for n in names}


KINDS = ["classification", "detection", "segmentation"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["full", "scratch"])
def test_full_and_scratch_train_every_parameter(registry, kind: str, name: str) -> None:
    model, changed, optimizer = _train_steps(registry, kind, name)
    params = _names(model, "backbone") | _names(model, "head")
    assert params == {n for n, _ in model.named_parameters()}  # every parameter is backbone or head
    assert params <= changed
    assert all(p.requires_grad for p in model.parameters())
    assert {g["lr"] for g in optimizer.param_groups} == {0.1}


@pytest.mark.parametrize("kind", KINDS)
def test_linear_probe_keeps_backbone_and_its_statistics_bit_identical(registry, kind: str) -> None:
    model, changed, optimizer = _train_steps(registry, kind, "linear_probe")
    backbone_state = _names(model, "backbone", params_only=False)
    assert backbone_state, "backbone has state"
    assert not (changed & backbone_state), "backbone weights or BatchNorm statistics moved"
    assert _names(model, "head") <= changed
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == _names(model, "head")
    assert [g["name"] for g in optimizer.param_groups] == ["head"]


def test_scratch_declares_it_ignores_pretrained_weights(registry) -> None:
    assert registry.get("strategy", "scratch").from_scratch
    assert not registry.get("strategy", "full").from_scratch

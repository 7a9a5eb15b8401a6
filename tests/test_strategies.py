"""Each strategy trains exactly the parameters it promises, on every task kind, at the promised learning rates.

Everything a strategy does not promise to train stays bit-identical after a few optimizer steps.
"""

from __future__ import annotations

import math

import pytest
import torch
from bench_plugins.tasks.distillation import feature_mse, pixel_kl, soft_label_kl

from harness.batchnorm import NORM_TYPES
from harness.registry import Registry
from harness.testing import KINDS, BriefRun, tiny_model, train_briefly


def _create(registry: Registry, name: str, **options):
    return registry.create("strategy", name, options)


def _backbone_bn_stats(run: BriefRun, stages: range | None = None) -> set[str]:
    names = {n for n in run.model.state_dict() if n.startswith("backbone.") and "running_" in n}
    if stages is not None:
        names = {n for n in names if int(n.split(".")[2]) in stages}
    return names


def _stages(run: BriefRun, indices) -> set[str]:
    return set().union(*(run.names(f"backbone.stages.{i}.") for i in indices))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["full", "scratch", "discriminative_lr", "l2sp"])
def test_strategies_that_train_everything(registry, kind: str, name: str) -> None:
    run = train_briefly(_create(registry, name), kind)
    assert run.names("backbone.") | run.names("head.") == run.names()  # every parameter is backbone or head
    assert run.changed == run.names()
    assert _backbone_bn_stats(run) <= run.changed_buffers  # BatchNorm policy "train"


@pytest.mark.parametrize("kind", KINDS)
def test_linear_probe_trains_only_new_parts_and_keeps_batchnorm_statistics(registry, kind: str) -> None:
    run = train_briefly(_create(registry, "linear_probe"), kind)
    assert run.changed == run.names("head.")
    assert not run.changed_buffers & _backbone_bn_stats(run)


@pytest.mark.parametrize("kind", KINDS)
def test_partial_trains_the_last_stages_and_new_parts(registry, kind: str) -> None:
    run = train_briefly(_create(registry, "partial", freeze_stages=3), kind)
    assert run.changed == run.names("head.") | _stages(run, [3, 4])
    assert not run.changed_buffers & _backbone_bn_stats(run, range(3))
    assert _backbone_bn_stats(run, range(3, 5)) <= run.changed_buffers
    same = train_briefly(_create(registry, "partial", train_stages=2), kind)
    assert same.changed == run.changed


def test_partial_asks_for_one_of_its_two_options(registry) -> None:
    with pytest.raises(ValueError, match="exactly one of freeze_stages, train_stages"):
        _create(registry, "partial")
    with pytest.raises(ValueError, match="freeze_stages = 9, but the backbone has 5 stages"):
        train_briefly(_create(registry, "partial", freeze_stages=9))


@pytest.mark.parametrize("kind", KINDS)
def test_bitfit_trains_biases_and_new_parts(registry, kind: str) -> None:
    run = train_briefly(_create(registry, "bitfit"), kind)
    biases = {n for n in run.names("backbone.") if n.endswith(".bias")}
    assert biases and run.changed == run.names("head.") | biases
    with_norms = train_briefly(_create(registry, "bitfit", norm_weights=True), kind)
    norms = {f"backbone.{n}.weight" for n, m in with_norms.model.backbone.named_modules() if isinstance(m, NORM_TYPES)}
    assert norms and with_norms.changed == run.changed | norms


@pytest.mark.parametrize("kind", KINDS)
def test_lora_trains_adapters_and_new_parts_only(registry, kind: str) -> None:
    _, plain, _ = tiny_model(kind)
    convs = {n for n, m in plain.backbone.named_modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1}
    run = train_briefly(_create(registry, "lora", rank=2, alpha=4), kind)
    adapters = {f"backbone.{n}.lora_{ab}.default.weight" for n in convs for ab in "AB"}
    assert run.names("backbone.") >= adapters
    assert run.changed == run.names("head.") | adapters
    assert not run.changed_buffers & _backbone_bn_stats(run)


def test_lora_counts_its_adapters_as_trainable(registry) -> None:
    strategy = _create(registry, "lora", rank=4, alpha=8, last_stages=1)
    _, model, _ = tiny_model("classification")
    strategy.prepare(model)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    expected = 0
    for module in model.backbone.stages[4].modules():
        if hasattr(module, "base_layer") and isinstance(module.base_layer, torch.nn.Conv2d):
            conv = module.base_layer
            expected += 4 * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] + conv.out_channels * 4
    head = sum(p.numel() for p in model.head.parameters())
    assert sum(trainable.values()) == expected + head


def test_lora_follows_dilated_convolutions(registry) -> None:
    run = train_briefly(_create(registry, "lora", rank=2, alpha=2), "segmentation", backbone="resnet50", steps=1)
    assert run.outcome.steps == 1  # dilated stages (output stride 16) get adapters with matching dilation


@pytest.mark.parametrize("kind", KINDS)
def test_discriminative_lr_gives_each_stage_its_rate(registry, kind: str) -> None:
    run = train_briefly(_create(registry, "discriminative_lr", head_lr_scale=10, stage_decay=0.5), kind)
    head = next(iter(run.names("head.")))
    assert run.group_of(head)["initial_lr"] == pytest.approx(1.0)  # 10 x 0.1
    for i in range(5):
        name = next(iter(run.names(f"backbone.stages.{i}.")))
        assert run.group_of(name)["initial_lr"] == pytest.approx(0.1 * 0.5 ** (4 - i))


@pytest.mark.parametrize("kind", KINDS)
def test_gradual_unfreeze_adds_a_stage_every_step_with_its_learning_rate(registry, kind: str) -> None:
    run = train_briefly(_create(registry, "gradual_unfreeze", every_steps=1, head_lr_scale=2), kind, steps=3)
    # step 0: new parts only; step 1: + stage 4; step 2: + stage 3
    assert run.changed == run.names("head.") | _stages(run, [3, 4])
    assert run.group_of(next(iter(run.names("head."))))["initial_lr"] == pytest.approx(0.2)
    assert run.group_of(next(iter(run.names("backbone.stages.3."))))["initial_lr"] == pytest.approx(0.1)
    assert not run.changed_buffers & _backbone_bn_stats(run, range(3))


def test_gradual_unfreeze_schedule_step_by_step(registry) -> None:
    _, model, _ = tiny_model("classification")
    by_steps = _create(registry, "gradual_unfreeze", every_steps=2)
    by_steps.prepare(model)
    seen = []
    for step in range(14):
        by_steps.on_step_start(model, step)
        seen.append(tuple(all(p.requires_grad for p in s.parameters()) for s in model.backbone.stages))
    expected = [tuple(i >= 5 - min(step // 2, 5) for i in range(5)) for step in range(14)]
    assert seen == expected
    assert all(p.requires_grad for p in model.head.parameters())

    by_epochs = _create(registry, "gradual_unfreeze", every_epochs=2, max_stages=2)
    by_epochs.prepare(model)
    counts = []
    for epoch in range(8):
        by_epochs.on_epoch_start(model, epoch)
        counts.append(sum(all(p.requires_grad for p in s.parameters()) for s in model.backbone.stages))
    assert counts == [0, 0, 1, 1, 2, 2, 2, 2]


def test_gradual_unfreeze_with_adamw_starts_optimizer_state_when_a_stage_unfreezes(registry) -> None:
    run = train_briefly(_create(registry, "gradual_unfreeze", every_steps=2), steps=3, optimizer="adamw")
    state = run.optimizer.state
    stage4 = run.model.get_parameter(next(iter(run.names("backbone.stages.4."))))
    stage3 = run.model.get_parameter(next(iter(run.names("backbone.stages.3."))))
    assert state[stage4]["step"] == 1  # unfrozen at step 2 of 0..2
    assert stage3 not in state  # never had a gradient: no update, no weight decay


def test_l2sp_penalty_matches_hand_computation() -> None:
    from bench_plugins.strategies.l2sp import l2sp_penalty

    w, w0, new = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.5]), torch.tensor([3.0])
    penalty = l2sp_penalty([w], [w0], [new], alpha=0.1, beta=0.01)
    assert penalty.item() == pytest.approx(0.05 * (1 + 1.5**2) + 0.005 * 9)


def test_l2sp_turns_weight_decay_off_and_adds_its_penalty(registry) -> None:
    strategy = _create(registry, "l2sp", alpha=1.0, beta=0.0)
    run = train_briefly(strategy, weight_decay=0.1)
    assert {g["weight_decay"] for g in run.optimizer.param_groups} == {0.0}
    moved = sum(((p.detach() - p0) ** 2).sum() for p, p0 in zip(strategy.backbone, strategy.start, strict=True))
    assert strategy.extra_loss(run.model).item() == pytest.approx(0.5 * moved.item(), rel=1e-5)


def test_distillation_losses_match_hand_computation() -> None:
    from bench_plugins.tasks.distillation import feature_mse, pixel_kl, soft_label_kl

    student, teacher = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    assert soft_label_kl(student, teacher, 1.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    q = math.sqrt(3) / (1 + math.sqrt(3))  # softmax([ln 3 / 2, 0])
    expected = 4 * (q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5))
    assert soft_label_kl(student, teacher, 2.0).item() == pytest.approx(expected)
    # per pixel: the same value at every pixel of a 3x3 map, and a coarser student is resized to the teacher
    s_map = student.view(1, 2, 1, 1).expand(1, 2, 2, 2)
    t_map = teacher.view(1, 2, 1, 1).expand(1, 2, 3, 3)
    assert pixel_kl(s_map, t_map, 2.0).item() == pytest.approx(expected)
    features = feature_mse(
        {"0": torch.ones(1, 1, 2, 2), "1": torch.full((1, 1, 2, 2), 2.0)},
        {"0": torch.zeros(1, 1, 2, 2), "1": torch.zeros(1, 1, 1, 1)},
    )
    assert features.item() == pytest.approx((1 + 4) / 2)


@pytest.mark.parametrize("kind", KINDS)
def test_distill_trains_everything_and_learns_from_the_teacher(registry, kind: str) -> None:
    _, teacher, _ = tiny_model(kind, seed=1)
    teacher.eval().requires_grad_(False)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    strategy = _create(registry, "distill", teacher_backbone="resnet18", weight=1.0)
    run = train_briefly(strategy, kind, teacher=teacher)
    assert run.changed == run.names()
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())  # teacher untouched
    # the extra term is the distillation loss between this student and the teacher
    task, _, dataset = tiny_model(kind)
    images, target = task.collate([dataset.load(kind, "train")[i] for i in range(2)])
    run.model.train()
    strategy.train_mode(run.model)
    batch = (images, target)
    _, outputs = task.loss_and_outputs(run.model, batch)
    extra = strategy.extra_loss(run.model, batch, outputs, strategy.context)
    with torch.no_grad():
        if kind == "detection":
            expected = feature_mse(outputs["features"], teacher.features(images))
        elif kind == "segmentation":
            expected = pixel_kl(outputs, teacher(images), 4.0)
        else:
            expected = soft_label_kl(outputs, teacher(images), 4.0)
    assert extra.item() > 0
    assert extra.item() == pytest.approx(expected.item(), rel=1e-6)
    assert extra.requires_grad  # the student learns from it


def test_distill_without_a_teacher_says_so(registry) -> None:
    with pytest.raises(ValueError, match="distill needs a teacher"):
        train_briefly(_create(registry, "distill", teacher_backbone="resnet18"))


@pytest.mark.parametrize("name", ["linear_probe", "full"])
@pytest.mark.parametrize("policy", ["train", "frozen_parts", "freeze"])
def test_batchnorm_policy_applies_to_every_strategy(registry, name: str, policy: str) -> None:
    run = train_briefly(_create(registry, name, batchnorm=policy), steps=2)
    stats = {n for n in run.model.state_dict() if "running_" in n}
    backbone_stats = _backbone_bn_stats(run)
    updated = run.changed_buffers & stats
    if policy == "freeze":
        assert not updated
    elif policy == "train" or name == "full":
        assert backbone_stats <= updated
    else:
        assert not updated & backbone_stats

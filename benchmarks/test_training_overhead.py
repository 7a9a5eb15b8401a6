"""How close the harness's training loop is to a hand-written one, as a ratio measured in one run.

Both loops train the same ResNet-18 classifier on the same in-memory batches with the same
optimizer; the harness adds its strategy callbacks, schedule, clipping, loss checks and
progress. Run with `pytest benchmarks --benchmark-only`; the ratio is printed and kept in the
benchmark's `extra_info` (harness seconds / hand-written seconds: 1.00 means no overhead).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from harness.assembly import AssembledCell, Parts
from harness.components import TrainingContext
from harness.devices import resolve_device
from harness.registry import Registry
from harness.settings import BackboneSettings, CellSpec, DatasetSettings, StrategySettings, TaskSettings, Training
from harness.training import TrainingLoop

STEPS, BATCH, SIZE = 12, 32, 32


def _setup():
    registry = Registry(entry_points=False)
    task = registry.create("task", "classification")
    dataset = registry.create("dataset", "shapes", {"image_size": SIZE, "train": STEPS * BATCH, "val": BATCH})
    split = dataset.load("classification", "train")
    batches = [task.collate([split[i] for i in range(s * BATCH, (s + 1) * BATCH)]) for s in range(STEPS)]
    val = [task.collate([dataset.load("classification", "val")[i] for i in range(BATCH)])]
    torch.manual_seed(0)
    model = task.build_model(registry.create("backbone", "resnet18").build(), 5)
    strategy = registry.create("strategy", "full")
    return Parts(task, dataset, registry.create("backbone", "resnet18"), strategy), model, batches, val


def _hand_written(model, batches, training: Training) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=training.momentum)
    model.train()
    started = time.perf_counter()
    for images, labels in batches:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def _harness(parts: Parts, model, batches, val, training: Training) -> float:
    """The harness's loop over the in-memory batches: the cell put together by hand, as `assemble` would."""
    setup = resolve_device("cpu", False)
    spec = CellSpec(
        task=TaskSettings(kind="classification", dataset=DatasetSettings(name="shapes"), metric="top1"),
        backbone=BackboneSettings(name="resnet18"),
        strategy=StrategySettings(name="full"),
        training=training,
        seed=0,
    )
    context = TrainingContext(parts.task, setup.device, len(batches), len(batches))
    groups = parts.strategy.prepare(model)
    cell = AssembledCell(spec, parts, setup, model, 5, {"train": batches, "val": val}, context, groups, {})  # type: ignore[dict-item]
    return TrainingLoop(cell).run().train_seconds


def test_training_loop_overhead(benchmark) -> None:
    torch.set_num_threads(2)
    # same math on both sides (no clipping, constant lr): what remains is the harness's own overhead
    training = Training(epochs=1, batch_size=BATCH, lr=0.01, weight_decay=0.0, warmup_fraction=0.0, schedule="constant")
    parts, model, batches, val = _setup()
    _hand_written(model, batches[:2], training)  # warm up allocator and kernels
    hand_seconds: list[float] = []
    train_seconds: list[float] = []  # the harness's own training time, validation excluded
    # rounds alternate: the hand-written loop runs as each round's setup, so drift hits both alike
    benchmark.pedantic(
        lambda: train_seconds.append(_harness(parts, model, batches, val, training)),
        setup=lambda: hand_seconds.append(_hand_written(model, batches, training)),
        rounds=15,
    )
    hand = min(hand_seconds)
    ratio = min(train_seconds) / hand
    # each round's harness run against the hand-written run just before it: the spread is the noise
    paired = sorted(t / h for t, h in zip(train_seconds, hand_seconds, strict=True))
    median = paired[len(paired) // 2]
    benchmark.extra_info.update(hand_written_seconds=hand, ratio_to_hand_written=ratio, median_paired_ratio=median)
    print(
        f"\nharness / hand-written training time: {ratio:.3f} (fastest of each; median of paired rounds {median:.3f}, "
        f"range {paired[0]:.3f}-{paired[-1]:.3f}; {STEPS} steps of {BATCH} at {SIZE}px)"
    )

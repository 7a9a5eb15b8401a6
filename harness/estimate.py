"""What a suite will cost before it runs: images each cell processes, divided by a measured throughput.

Throughput comes from cells of the same task and backbone already in the results directory
(`recorded`), or from a short calibration: a few training steps of full fine-tuning on
synthetic batches of the suite's image size, on this machine's device (`calibrated`). Full
fine-tuning is the slowest strategy, so estimates are upper bounds for strategies that freeze
parts of the model. Evaluation is counted at three times the training rate (a forward pass
without the backward).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from harness.cell import Cell
from harness.components import Task
from harness.devices import DeviceSetup, resolve_device, synchronized
from harness.registry import Registry
from harness.store import Store
from harness.suite import Training
from harness.training import build_optimizer, seed_everything, step_budget

EVAL_SPEEDUP = 3.0


@dataclass
class GroupEstimate:
    """The cells of one task x backbone: how many images they process and how long that takes."""

    task: str
    backbone: str
    cells: int
    train_images: int
    eval_images: int
    images_per_second: float | None
    source: str  # "recorded", "calibrated" or why there is no figure

    @property
    def device_hours(self) -> float | None:
        if not self.images_per_second:
            return None
        seconds = self.train_images / self.images_per_second
        return (seconds + self.eval_images / (EVAL_SPEEDUP * self.images_per_second)) / 3600


def dataset_shape(cell: Cell, registry: Registry) -> tuple[dict[str, int], int]:
    """(images per split, classes) of a cell's dataset."""
    spec = cell.settings["task"]
    return registry.create("dataset", spec["dataset"]["name"], spec["dataset"]["options"]).shape(spec["kind"])


def images_of(cell: Cell, sizes: dict[str, int]) -> tuple[int, int]:
    """(training images, evaluation images) a cell processes: its step budget, validation every epoch, one test pass."""
    training = Training(**cell.settings["training"])
    per_epoch = max(1, sizes["train"] // training.batch_size)
    steps, epochs = step_budget(training, per_epoch)
    return steps * training.batch_size, epochs * sizes["val"] + sizes["test"]


def estimate(
    cells: Iterable[Cell], registry: Registry, store: Store, device: str, calibrate: bool
) -> list[GroupEstimate]:
    """One estimate per task x backbone of `cells` (skipped cells cost nothing)."""
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        if not cell.skip_reason:
            groups.setdefault((cell.task, cell.backbone), []).append(cell)
    recorded = _recorded(store)
    setup = resolve_device(device, amp=True) if calibrate else None
    found = []
    shapes: dict[str, tuple[dict[str, int], int]] = {}  # by task: reading a dataset's files once is enough
    for (task, backbone), members in groups.items():
        train = evaluation = 0
        try:
            if task not in shapes:
                shapes[task] = dataset_shape(members[0], registry)
            for cell in members:
                t, e = images_of(cell, shapes[task][0])
                train, evaluation = train + t, evaluation + e
        except Exception as exc:  # a dataset that cannot say its size: no estimate, but the plan goes on
            why = str(exc).split(";")[0]
            found.append(GroupEstimate(task, backbone, len(members), 0, 0, None, f"sizes unknown: {why}"))
            continue
        rate = recorded.get((task, members[0].settings["backbone"]["name"]))
        source = "recorded" if rate else "not measured: run `bench plan --calibrate`"
        if rate is None and setup is not None:
            rate = _calibrate(members[0], registry, setup, shapes[task][1])
            source = f"calibrated on {setup.name}"
        found.append(GroupEstimate(task, backbone, len(members), train, evaluation, rate, source))
    return found


def _recorded(store: Store) -> dict[tuple[str, str], float]:
    """Mean training images/s of `full` cells already run, by task and backbone name."""
    rates: dict[tuple[str, str], list[float]] = {}
    for result in store.results() if store.cells_dir.is_dir() else []:
        if result.status == "ok" and result.settings.get("strategy", {}).get("name") in ("full", "scratch"):
            key = (result.task, result.settings["backbone"]["name"])
            rates.setdefault(key, []).append(result.cost.samples_per_second)
    return {key: sum(values) / len(values) for key, values in rates.items() if values}


def _calibrate(cell: Cell, registry: Registry, setup: DeviceSetup, classes: int, steps: int = 3) -> float:
    """Training images/s of full fine-tuning on synthetic batches shaped like the cell's."""
    spec = cell.settings["task"]
    task: Task = registry.create("task", spec["kind"], spec["options"])
    dataset = registry.create("dataset", spec["dataset"]["name"], spec["dataset"]["options"])
    training = Training(**cell.settings["training"])
    seed_everything(0)
    chosen = cell.settings["backbone"]
    backbone = registry.create("backbone", chosen["name"], chosen.get("options")).build(task.output_stride())
    model = task.build_model(backbone, classes).to(setup.device).train()
    optimizer = build_optimizer([{"params": list(model.parameters())}], training)  # type: ignore[list-item]
    size = int(getattr(dataset.options, "image_size", 224))
    samples = _synthetic(spec["kind"], task, size, classes, training.batch_size)
    batch = task.to_device(task.collate(samples), setup.device)

    def step() -> None:
        with setup.autocast():
            loss = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: allocation, cuDNN autotuning
    with synchronized(setup):
        started = time.perf_counter()
        for _ in range(steps):
            step()
    return steps * training.batch_size / (time.perf_counter() - started)


def _synthetic(kind: str, task: Task, size: int, classes: int, count: int) -> list[Any]:
    """Random samples of a task kind: images in [0, 1], labels, boxes or masks."""
    if kind == "detection":  # Faster R-CNN resizes to its min_size; VOC-like 4:3 images
        height = int(getattr(task.options, "min_size", size))
        width = min(int(getattr(task.options, "max_size", height)), height * 4 // 3)
        boxes = torch.tensor([[0.1 * width, 0.1 * height, 0.6 * width, 0.7 * height]])
        target = {"boxes": boxes, "labels": torch.tensor([0])}
        return [(torch.rand(3, height, width), target) for _ in range(count)]
    if kind == "segmentation":
        return [(torch.rand(3, size, size), torch.randint(0, classes, (size, size))) for _ in range(count)]
    return [(torch.rand(3, size, size), int(torch.randint(0, classes, ()))) for _ in range(count)]

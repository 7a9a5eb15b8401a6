"""What a suite will cost before it runs: images each cell processes, divided by a throughput.

Throughput comes, in this order of preference, from cells of the same task and backbone already
in the results directory (`recorded`), from a short calibration: a few training steps of full
fine-tuning on synthetic batches of the suite's image size, on this machine's device
(`calibrated`), or from FLOPs (`flops`): the training FLOPs per image of full fine-tuning,
counted by torch on the CPU (on the meta device where the model allows, so nothing is
computed), divided by a device throughput in TFLOPS, stated (`bench plan --tflops`) or assumed
for the device (`device_throughput`). Full
fine-tuning is the slowest strategy, so estimates are upper bounds for strategies that freeze
parts of the model. Evaluation is counted at three times the training rate (a forward pass
without the backward).

`wall_hours` turns per-cell durations into the wall time of N parallel slots: a list-scheduling
simulation that starts a cell only after the cells it depends on (its teacher, its pretraining
stage).
"""

from __future__ import annotations

import functools
import heapq
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from harness.assembly import Parts, assemble
from harness.cell import Cell
from harness.components import Task
from harness.cost import flops_per_sample
from harness.devices import DeviceSetup, resolve_device, setup_for, synchronized, usable_cores
from harness.errors import Unsupported
from harness.loaders import seed_everything
from harness.registry import Registry
from harness.settings import StrategySettings, step_budget
from harness.store import Store
from harness.training import TrainingLoop

EVAL_SPEEDUP = 3.0

#: effective (sustained) TFLOPS assumed when none is stated and the device is not recognised:
#: an A100-class GPU training with AMP at about a third of its 312 TFLOPS float16 tensor peak
DEFAULT_TFLOPS = 100.0
#: effective TFLOPS of known CUDA devices, matched in this order against the device name:
#: about a third of each one's dense float16 tensor peak, the utilisation the default assumes
KNOWN_GPUS: tuple[tuple[str, float], ...] = (
    ("H200", 330.0),
    ("H100", 300.0),
    ("A100", 100.0),
    ("L40S", 120.0),
    ("L40", 60.0),
    ("A10", 40.0),
    ("L4", 40.0),
    ("V100", 40.0),
    ("RTX 4090", 55.0),
    ("RTX 3090", 24.0),
    ("T4", 20.0),
)
#: effective TFLOPS per CPU core when the device is the CPU: the quickstart's measured rate
#: (about 45 GFLOPS of training on 2 cores)
CPU_TFLOPS_PER_CORE = 0.02
#: parallel slots `bench plan` shows the wall time for
SLOTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class Throughput:
    """A device's effective TFLOPS and where the figure comes from."""

    tflops: float
    why: str  # "stated", "assumed default", "assumed for NVIDIA H100 ..."


def device_throughput(stated: float | None, device: str) -> Throughput:
    """The TFLOPS FLOP-based estimates divide by: `--tflops` if given, else a figure for the device."""
    if stated is not None:
        return Throughput(stated, "stated")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):  # what `auto` runs on here
        cores = usable_cores()
        hint = "; --tflops for a GPU" if device == "auto" else ""
        return Throughput(round(CPU_TFLOPS_PER_CORE * cores, 4), f"assumed for {cores} CPU cores{hint}")
    if (device in ("auto", "cuda") or device.startswith("cuda:")) and torch.cuda.is_available():
        index = device.partition(":")[2]
        name = torch.cuda.get_device_name(int(index) if index.isdigit() else 0)
        for pattern, tflops in KNOWN_GPUS:
            if pattern in name:
                return Throughput(tflops, f"assumed for {name}")
    return Throughput(DEFAULT_TFLOPS, "assumed default")


def absent_device_note(device: str, stated: float | None, source: str) -> str | None:
    """One line, said before any number, when the suite's device is not on this machine and no
    `--tflops` says how fast that device is: the estimate is then for this machine (or a default)."""
    if stated is not None or device == "cpu" or torch.cuda.is_available():
        return None
    if device == "auto":
        speed = device_throughput(None, device)
        return (
            f"{source} runs on device 'auto', and this machine has no CUDA device: the estimate below is for "
            f"its {usable_cores()} CPU cores ({speed.tflops:g} TFLOPS); for the GPU it will run on, give --tflops "
            f"(e.g. --tflops {DEFAULT_TFLOPS:g} for an A100-class GPU at a third of its peak)"
        )
    return (
        f"{source} runs on device {device!r}, which this machine does not have: FLOP-based estimates assume "
        f"{DEFAULT_TFLOPS:g} TFLOPS (an A100-class GPU at a third of its peak); give --tflops for the real device"
    )


@dataclass
class GroupEstimate:
    """The cells of one task x backbone: how many images they process and how long that takes."""

    task: str
    backbone: str
    cells: int
    train_images: int
    eval_images: int
    images_per_second: float | None
    source: str  # where the throughput comes from, or why there is none
    #: "recorded", "calibrated", "flops", or None without a throughput
    basis: str | None = None
    #: training FLOPs per image of full fine-tuning, when counted
    flops_per_image: float | None = None
    #: keys of the cells of the group, in plan order
    keys: list[str] = field(default_factory=list)

    @property
    def device_hours(self) -> float | None:
        if not self.images_per_second:
            return None
        seconds = self.train_images / self.images_per_second
        return (seconds + self.eval_images / (EVAL_SPEEDUP * self.images_per_second)) / 3600


def dataset_shape(cell: Cell, registry: Registry) -> tuple[dict[str, int], int]:
    """(images per split, classes) of a cell's dataset."""
    spec = cell.settings.task
    return registry.create("dataset", spec.dataset.name, spec.dataset.options).shape(spec.kind)


def images_of(cell: Cell, sizes: dict[str, int]) -> tuple[int, int]:
    """(training images, evaluation images) a cell processes: its step budget, validation every epoch, one test pass."""
    training = cell.settings.training
    per_epoch = max(1, sizes["train"] // training.batch_size)
    steps, epochs = step_budget(training, per_epoch)
    return steps * training.batch_size, epochs * sizes["val"] + sizes["test"]


def estimate(
    cells: Iterable[Cell],
    registry: Registry,
    store: Store,
    device: str,
    calibrate: bool,
    throughput: Throughput | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[GroupEstimate]:
    """One estimate per task x backbone of `cells` (skipped cells cost nothing).

    Throughput: recorded, else calibrated (with `calibrate`), else from FLOPs at `throughput`
    (default: `device_throughput(None, device)`). `progress` hears one line before each calibration,
    which trains a few steps and can take minutes on a CPU.
    """
    groups: dict[tuple[str, str], list[Cell]] = {}
    for cell in cells:
        if not cell.skip_reason:
            groups.setdefault((cell.task, cell.backbone), []).append(cell)
    recorded = _recorded(store)
    setup = resolve_device(device) if calibrate else None
    speed = throughput or device_throughput(None, device)
    to_calibrate = sum(1 for (t, _), m in groups.items() if not recorded.get((t, m[0].settings.backbone.name)))
    calibrated = 0
    counted: dict[str, float | str] = {}  # FLOPs per image (or why not), by model and input: counted once
    found = []
    shapes: dict[str, tuple[dict[str, int], int]] = {}  # by task: reading a dataset's files once is enough
    for (task, backbone), members in groups.items():
        keys = [cell.key for cell in members]
        train = evaluation = 0
        try:
            if task not in shapes:
                shapes[task] = dataset_shape(members[0], registry)
            for cell in members:
                t, e = images_of(cell, shapes[task][0])
                train, evaluation = train + t, evaluation + e
        except Exception as exc:  # a dataset that cannot say its size: no estimate, but the plan goes on
            why = str(exc).split(";")[0]
            found.append(GroupEstimate(task, backbone, len(members), 0, 0, None, f"sizes unknown: {why}", keys=keys))
            continue
        group = GroupEstimate(task, backbone, len(members), train, evaluation, None, "", keys=keys)
        rate = recorded.get((task, members[0].settings.backbone.name))
        if rate:
            group.images_per_second, group.source, group.basis = rate, "recorded", "recorded"
        elif setup is not None:
            if progress is not None:
                calibrated += 1
                progress(f"calibrating {calibrated}/{to_calibrate}: {task} x {backbone} on {setup.name}")
            try:
                rate = _calibrate(members[0], registry, setup, shapes[task][1])
            except Unsupported as exc:  # a task without synthetic samples: no estimate, the plan goes on
                group.source = f"not calibrated: {exc}"
            else:
                group.images_per_second, group.source, group.basis = rate, f"calibrated on {setup.name}", "calibrated"
        else:
            key = flops_key(members[0], registry, shapes[task][1])
            if key not in counted:
                counted[key] = count_flops(members[0], registry, shapes[task][1])
            flops = counted[key]
            if isinstance(flops, str):
                group.source = f"FLOPs not counted: {flops}; run `bench plan --calibrate`"
            else:
                group.flops_per_image, group.basis = flops, "flops"
                group.images_per_second = speed.tflops * 1e12 / flops
                gflops = f"{flops / 1e9:,.0f}" if flops >= 1e11 else f"{flops / 1e9:.3g}"
                group.source = f"FLOPs: {gflops} GFLOPs/img at {speed.tflops:g} TFLOPS ({speed.why})"
        found.append(group)
    return found


def flops_key(cell: Cell, registry: Registry, classes: int) -> str:
    """What the FLOPs of a cell's training step depend on: task kind and options, backbone, input size, classes."""
    spec = cell.settings.task
    dataset = registry.create("dataset", spec.dataset.name, spec.dataset.options)
    parts = {
        "kind": spec.kind,
        "options": spec.options,
        "backbone": cell.settings.backbone.name,
        "backbone_options": cell.settings.backbone.options,
        "size": int(getattr(dataset.options, "image_size", 224)),
        "classes": classes,
    }
    return json.dumps(parts, sort_keys=True, default=str)


def count_flops(cell: Cell, registry: Registry, classes: int) -> float | str:
    """Training FLOPs per image of full fine-tuning for a cell's task and backbone, or why they cannot be counted.

    One step on a synthetic batch of the dataset's image size, counted by torch's
    FlopCounterMode. First on the meta device, where nothing is computed (under a second even
    at 768 px), with two images (BatchNorm trains on more than one value per channel); models
    that cannot run there (Faster R-CNN: NMS and proposal matching have data-dependent shapes)
    run on the CPU at the real size, with the task's smallest batch (one image for detection,
    two if one fails), a few seconds each. Operators torch does not count (RoIAlign, NMS)
    are left out, as in the FLOPs the runner records.
    """
    spec = cell.settings.task
    task: Task = registry.create("task", spec.kind, spec.options)
    dataset = registry.create("dataset", spec.dataset.name, spec.dataset.options)
    chosen = cell.settings.backbone
    size = int(getattr(dataset.options, "image_size", 224))
    smallest = max(1, task.min_train_batch())
    attempts = [("meta", max(2, smallest)), ("cpu", smallest), *([("cpu", 2)] if smallest < 2 else [])]
    why = "torch could not count them"
    for where, count in attempts:
        device = torch.device(where)
        try:
            seed_everything(0)
            with device:
                plugin = registry.create("backbone", chosen.name, chosen.options)
                model = task.build_model(plugin.build(task.output_stride()), classes).train()
            batch = task.to_device(task.collate(task.synthetic_samples(size, classes, count)), device)
            flops = flops_per_sample(functools.partial(task.loss, model, batch), count)
            if flops:
                return flops
            if where == "cpu":  # counting failed: run the step uncounted to say why
                task.loss(model, batch).backward()
                why = "torch could not count them"
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    return why


def _recorded(store: Store) -> dict[tuple[str, str], float]:
    """Mean training images/s of `full` cells already run, by task and backbone name."""
    rates: dict[tuple[str, str], list[float]] = {}
    for result in store.results() if store.cells_dir.is_dir() else []:
        if result.status == "ok" and result.settings.get("strategy", {}).get("name") in ("full", "scratch"):
            key = (result.task, result.settings["backbone"]["name"])
            rates.setdefault(key, []).append(result.cost.samples_per_second)
    return {key: sum(values) / len(values) for key, values in rates.items() if values}


def _calibrate(cell: Cell, registry: Registry, setup: DeviceSetup, classes: int, steps: int = 3) -> float:
    """Training images/s of full fine-tuning on synthetic batches shaped like the cell's: the loop's own
    training step (callbacks, grad scaler, clipping, schedule), on the cell assembled as the runner does."""
    spec = cell.settings.model_copy(
        update={
            "strategy": StrategySettings(name="full"),
            "backbone": cell.settings.backbone.model_copy(update={"weights": "none"}),
            "teacher": None,
        }
    )
    parts = Parts.of(spec, registry)
    setup = setup_for(str(setup.device), spec.training, parts.task)  # the cell's precision and memory format
    size = int(getattr(parts.dataset.options, "image_size", 224))
    samples = parts.task.synthetic_samples(size, classes, spec.training.batch_size)
    loop = TrainingLoop(assemble(spec, parts, setup, registry=registry, samples=samples, num_classes=classes))
    batch = loop.on_device(next(iter(loop.loaders["train"])))
    loop.model.train()
    loop.train_step(loop.model, batch, 0)  # warm-up: allocation, cuDNN autotuning
    with synchronized(setup):
        started = time.perf_counter()
        for step in range(1, steps + 1):
            loop.train_step(loop.model, batch, step)
    return steps * spec.training.batch_size / (time.perf_counter() - started)


def wall_hours(jobs: Sequence[tuple[str, float, Iterable[str]]], slots: int) -> float:
    """Wall time of running `jobs` (key, hours, keys it must wait for) on `slots` parallel slots.

    List scheduling, as an executor with `slots` workers runs a plan: whenever a slot is free
    it takes the first job, in the given order, whose dependencies have all finished; it waits
    for the next job to finish when none is ready. Dependencies on keys outside `jobs` (cells
    already done) are met. Raises ValueError when dependencies form a cycle.
    """
    if slots < 1:
        raise ValueError(f"slots must be at least 1, got {slots}")
    known = {key for key, _, _ in jobs}
    hours = {key: duration for key, duration, _ in jobs}
    waits = {key: {d for d in after if d in known and d != key} for key, _, after in jobs}
    pending = [key for key, _, _ in jobs]
    finished: set[str] = set()
    running: list[tuple[float, int, str]] = []  # (end, start order, key)
    now, started = 0.0, 0
    while pending or running:
        while len(running) < slots:
            ready = next((key for key in pending if waits[key] <= finished), None)
            if ready is None:
                break
            pending.remove(ready)
            heapq.heappush(running, (now + hours[ready], started, ready))
            started += 1
        if not running:
            raise ValueError(f"dependencies of {', '.join(pending[:3])} can never be met (a cycle)")
        now, _, key = heapq.heappop(running)
        finished.add(key)
        while running and running[0][0] <= now:  # every job that ends at the same time
            finished.add(heapq.heappop(running)[2])
    return now


def cell_jobs(
    groups: Sequence[GroupEstimate], cells: Iterable[Cell], stages: dict[str, str]
) -> list[tuple[str, float, list[str]]]:
    """The cells of the estimated groups as jobs for `wall_hours`, in the order given.

    Each cell takes an even share of its group's device-hours and waits for the cells it needs (teacher, inputs)
    and for its pretraining stage (`stages`: stage name -> key of the stage's cell). Cells of
    groups without an estimate are left out.
    """
    hours = {key: g.device_hours / g.cells for g in groups if g.device_hours is not None for key in g.keys}
    jobs = []
    for cell in cells:
        if cell.key in hours:
            after = [*cell.needs, *([stages[cell.pretrain]] if cell.pretrain in stages else [])]
            jobs.append((cell.key, hours[cell.key], after))
    return jobs

"""Images/s of the harness's training loop against a hand-written loop, on a CUDA GPU.

Three real workloads, each with the speed settings `bench` picks on the device (AMP: bf16 for
classification and segmentation where the GPU has it, fp16 with a gradient scaler for
detection; channels_last for classification and segmentation; cudnn.benchmark on):

- resnet50 classification at 224 px, batch 64
- Faster R-CNN (resnet50 + FPN) detection at 512 px, batch 8
- DeepLabV3 (resnet50, output stride 16) segmentation at 512 px, batch 8

Both loops train the same task model on the same batches, already on the GPU (the loader is
measured by benchmarks/test_loader_throughput.py, not here), with the same optimizer and
precision; rounds alternate between the two so that clock and thermal drift hit both alike.
The ratio is harness images/s over hand-written images/s: 1.00 means no overhead.

    python benchmarks/gpu_throughput.py                 # writes results/gpu/throughput-<gpu>.json and .md
    python benchmarks/gpu_throughput.py --device cpu --size 64 --steps 2 --rounds 1 --output /tmp/smoke
                                                        # the same code on the CPU, tiny: a smoke test

Without CUDA (and without --device cpu) it says so and exits 0 without measuring anything.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from harness.assembly import AssembledCell, Parts
from harness.components import TrainingContext
from harness.devices import execution_settings, resolve_device, setup_for, synchronized
from harness.provenance import provenance
from harness.registry import Registry
from harness.settings import BackboneSettings, CellSpec, DatasetSettings, StrategySettings, TaskSettings, Training
from harness.training import TrainingLoop, to_memory_format

#: (task kind, image size, batch size, task options)
WORKLOADS: dict[str, tuple[str, int, int, dict[str, Any]]] = {
    "resnet50-classification-224": ("classification", 224, 64, {}),
    "fasterrcnn-resnet50-fpn-512": ("detection", 512, 8, {"min_size": 512, "max_size": 512}),
    "deeplabv3-resnet50-512": ("segmentation", 512, 8, {}),
}
CLASSES = 21


def _batches(registry: Registry, kind: str, size: int, batch: int, options: dict[str, Any], count: int, setup: Any):
    task = registry.create("task", kind, options)
    torch.manual_seed(0)
    made = [task.collate(task.synthetic_samples(size, CLASSES, batch)) for _ in range(count)]
    return task, [to_memory_format(task.to_device(b, setup.device), setup) for b in made]


def _model(registry: Registry, task: Any, setup: Any) -> Any:
    torch.manual_seed(0)
    model = task.build_model(registry.create("backbone", "resnet50").build(task.output_stride()), CLASSES)
    model = model.to(setup.device)
    if setup.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def hand_written(task: Any, model: Any, batches: list[Any], training: Training, setup: Any) -> float:
    """Images/s of the plainest correct loop: forward under autocast, scaled backward, step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=training.lr, momentum=training.momentum)
    scaler = torch.amp.GradScaler(setup.device.type, enabled=setup.needs_grad_scaler())
    model.train()
    with synchronized(setup):
        started = time.perf_counter()
        for batch in batches:
            with setup.autocast():
                loss, _ = task.loss_and_outputs(model, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
    return len(batches) * task.batch_size(batches[0]) / (time.perf_counter() - started)


def harness_loop(task: Any, model: Any, batches: list[Any], training: Training, setup: Any) -> float:
    """Images/s of `TrainingLoop` on the same batches: strategy callbacks, schedule, events, timing split."""
    registry = Registry(entry_points=False)
    strategy = registry.create("strategy", "full")
    spec = CellSpec(
        task=TaskSettings(kind=task.name, dataset=DatasetSettings(name="shapes"), metric=task.metrics[0]),
        backbone=BackboneSettings(name="resnet50"),
        strategy=StrategySettings(name="full"),
        training=training,
        seed=0,
    )
    parts = Parts(task, registry.create("dataset", "shapes"), registry.create("backbone", "resnet50"), strategy)
    context = TrainingContext(task, setup.device, len(batches), len(batches), autocast=setup.autocast)
    loaders: Any = {"train": batches, "val": batches[:1]}
    cell = AssembledCell(spec, parts, setup, model, CLASSES, loaders, context, strategy.prepare(model), {})
    outcome = TrainingLoop(cell).run()
    return outcome.samples / outcome.train_seconds


def measure(name: str, device: str, steps: int, rounds: int, size: int | None) -> dict[str, Any]:
    kind, default_size, batch, options = WORKLOADS[name]
    size = size or default_size
    if size != default_size and kind == "detection":
        options = {"min_size": size, "max_size": size}
    registry = Registry(entry_points=False)
    # same math on both sides: constant rate, no warmup, no weight decay split, no clipping
    training = Training(epochs=1, batch_size=batch, lr=0.01, weight_decay=0.0, warmup_fraction=0.0, schedule="constant")
    setup = setup_for(device, training, registry.create("task", kind, options))
    with execution_settings(setup, []):
        task, batches = _batches(registry, kind, size, batch, options, steps, setup)
        model = _model(registry, task, setup)
        hand_written(task, model, batches[: max(2, steps // 5)], training, setup)  # allocator, cuDNN autotuning
        hand, ours = [], []
        for _ in range(rounds):
            hand.append(hand_written(task, model, batches, training, setup))
            ours.append(harness_loop(task, model, batches, training, setup))
    return {
        "workload": name,
        "kind": kind,
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        "rounds": rounds,
        **setup.describe(),
        "hand_written_images_per_second": max(hand),
        "harness_images_per_second": max(ours),
        "ratio": max(ours) / max(hand),
        "all_rounds": {"hand_written": hand, "harness": ours},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=30, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=None, help="image size for every workload (default: theirs)")
    parser.add_argument("--only", action="append", choices=sorted(WORKLOADS), help="one workload (repeatable)")
    parser.add_argument("--output", type=Path, default=Path("results/gpu"))
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_throughput: no CUDA device here; nothing measured (use --device cpu for a smoke run)", file=sys.stderr
        )
        return 0
    results = []
    for name in args.only or list(WORKLOADS):
        row = measure(name, args.device, args.steps, args.rounds, args.size)
        results.append(row)
        print(
            f"{name}: harness {row['harness_images_per_second']:.1f} img/s, hand-written "
            f"{row['hand_written_images_per_second']:.1f} img/s, ratio {row['ratio']:.3f}",
            file=sys.stderr,
        )
    device_name = resolve_device(args.device).name
    document = {
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_name,
        "provenance": provenance(device_name, 0),
        "results": results,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    stem = "throughput-" + "".join(c if c.isalnum() else "-" for c in device_name).strip("-").lower()
    (args.output / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = [
        f"# Training loop throughput on {device_name}",
        "",
        "| workload | precision | channels_last | hand-written img/s | harness img/s | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['workload']} | {row['precision']} | {row['channels_last']} | "
            f"{row['hand_written_images_per_second']:.1f} | {row['harness_images_per_second']:.1f} | "
            f"{row['ratio']:.3f} |"
        )
    (args.output / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(args.output / f"{stem}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

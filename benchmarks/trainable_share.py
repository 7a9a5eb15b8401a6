"""Print the share of trainable parameters each strategy leaves on a backbone, per task kind (markdown).

    python benchmarks/trainable_share.py [BACKBONE]

Counts after `prepare` on a randomly initialised backbone wrapped by each task with its
default options and 10 classes, as docs/strategies.md reports it.
"""

from __future__ import annotations

import sys

import torch

from harness.registry import Registry

KINDS = ("classification", "detection", "segmentation")
STRATEGIES: list[tuple[str, dict]] = [
    ("full", {}),
    ("linear_probe", {}),
    ("partial", {"freeze_stages": 3}),
    ("discriminative_lr", {}),
    ("gradual_unfreeze", {}),
    ("bitfit", {}),
    ("bitfit", {"norm_weights": True}),
    ("lora", {"rank": 8, "alpha": 16}),
    ("l2sp", {}),
]


def share(registry: Registry, backbone: str, kind: str, name: str, options: dict) -> tuple[int, int]:
    task = registry.create("task", kind)
    model = task.build_model(registry.create("backbone", backbone).build(task.output_stride()), 10)
    registry.create("strategy", name, options).prepare(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def main() -> None:
    backbone = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
    registry = Registry(entry_points=False)
    torch.manual_seed(0)
    print(f"| strategy ({backbone}) | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    for name, options in STRATEGIES:
        label = name + "".join(f" ({k}={v})" for k, v in options.items())
        cells = []
        for kind in KINDS:
            trainable, total = share(registry, backbone, kind, name, options)
            cells.append(f"{trainable / 1e6:.3f}M of {total / 1e6:.2f}M ({100 * trainable / total:.3g}%)")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

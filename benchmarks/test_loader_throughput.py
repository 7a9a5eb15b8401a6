"""Images/s of the data loader alone at 224 px, and as a ratio to decoding the same JPEGs in one process.

The loader is what `bench run` uses: the ImageFolder plugin (JPEG decode, RandomResizedCrop to
224 px, flip, to float) behind `harness.training.make_loader` with worker processes. The
baseline, measured in the same run, is a bare loop that only decodes the files: a ratio above
1 means the workers more than pay for the augmentations. Compare the printed images/s with a
backbone's training images/s (`bench plan --calibrate`) to see whether loading can keep a
device busy. Run with `pytest benchmarks --benchmark-only -s`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.devices import resolve_device, usable_cores
from harness.loaders import make_loader
from harness.registry import Registry

IMAGES, BATCH = 192, 32


def _write_jpegs(root: Path) -> None:
    """VOC/ImageNet-sized photos (500 x 375), two classes, with texture so JPEG decoding does real work."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(IMAGES // 2 if split == "train" else 2):
                pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)


def _decode_only(paths: list[Path]) -> float:
    started = time.perf_counter()
    for path in paths:
        Image.open(path).convert("RGB").load()
    return len(paths) / (time.perf_counter() - started)


def _loader(loader: torch.utils.data.DataLoader) -> float:
    started = time.perf_counter()
    count = sum(len(images) for images, _ in loader)
    return count / (time.perf_counter() - started)


def test_loader_images_per_second(benchmark, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    _write_jpegs(tmp_path)
    registry = Registry(entry_points=False)
    task = registry.create("task", "classification")
    dataset = registry.create(
        "dataset", "image_folder", {"root": str(tmp_path), "image_size": 224, "val_fraction": 0.01}
    )
    split = dataset.load("classification", "train")
    workers = max(1, usable_cores())
    loader = make_loader(split, task, BATCH, resolve_device("auto", False), workers, train=True)
    paths = sorted(tmp_path.glob("train/*/*.jpg"))
    baseline: list[float] = []
    rates: list[float] = []
    benchmark.pedantic(
        lambda: rates.append(_loader(loader)), setup=lambda: baseline.append(_decode_only(paths)), rounds=3
    )
    rate, decode = max(rates), max(baseline)
    benchmark.extra_info.update(images_per_second=rate, decode_only_images_per_second=decode, workers=workers)
    print(f"\nloader: {rate:.0f} images/s at 224 px with {workers} workers; decode only, one process: "
          f"{decode:.0f} images/s; ratio {rate / decode:.2f}")  # fmt: skip

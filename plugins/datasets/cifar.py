"""CIFAR-10 and CIFAR-100 (torchvision's readers of the python pickled batches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import torch
from bench_plugins.datasets.common import RealDataset, RealDatasetOptions
from pydantic import Field
from torchvision import datasets

from harness import Dataset, hookimpl


class CifarOptions(RealDatasetOptions):
    image_size: Annotated[int, Field(ge=16, le=2048)] = 32


class Cifar10(RealDataset):
    """CIFAR-10: 50k training and 10k test images of 10 classes at 32 px; torchvision can download it."""

    name = "cifar10"
    kinds = ("classification",)
    Options = CifarOptions
    options: CifarOptions
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "test"}
    layout = "ROOT/cifar-10-batches-py/ with data_batch_1..5, test_batch and batches.meta"
    downloadable = True
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"classification": (50000, 10000, 10)}
    reader: ClassVar[type[datasets.CIFAR10]] = datasets.CIFAR10

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        root = Path(self.options.root).expanduser()
        return self.reader(str(root), train=source_split == "train", download=self.options.download)

    def class_names(self, kind: str) -> list[str]:
        return list(self.raw(kind, "test").classes)  # type: ignore[attr-defined]


class Cifar100(Cifar10):
    """CIFAR-100: 50k training and 10k test images of 100 fine classes at 32 px; torchvision can download it."""

    name = "cifar100"
    layout = "ROOT/cifar-100-python/ with train, test and meta"
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"classification": (50000, 10000, 100)}
    reader = datasets.CIFAR100


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [Cifar10, Cifar100]

"""Classification from folders: any ImageFolder tree, and ImageNet in torchvision's layout."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from bench_plugins.datasets.common import RealDataset, RealDatasetOptions
from torchvision import datasets

from harness import Dataset, hookimpl


class ImageFolderOptions(RealDatasetOptions):
    #: sub-folders of `root` holding the training and the evaluation images, one folder per class
    train_dir: str = "train"
    test_dir: str = "test"


class ImageFolder(RealDataset):
    """Any tree of ROOT/<split>/<class>/<image>: a user's own classes, or e.g. hotdog / not-hotdog."""

    name = "image_folder"
    kinds = ("classification",)
    Options = ImageFolderOptions
    options: ImageFolderOptions
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "test"}

    def expected_layout(self) -> str:
        o = self.options
        return f"ROOT/{o.train_dir}/<class>/*.jpg and ROOT/{o.test_dir}/<class>/*.jpg (the same class folders)"

    def folder(self, source_split: str) -> Path:
        sub = self.options.train_dir if source_split == "train" else self.options.test_dir
        return Path(self.options.root).expanduser() / sub

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        found = datasets.ImageFolder(str(self.folder(source_split)))
        if source_split != "train":
            train_classes = datasets.folder.find_classes(str(self.folder("train")))[0]
            if found.classes != train_classes:
                raise RuntimeError(f"class folders differ: train has {train_classes}, test has {found.classes}")
        return found

    def class_names(self, kind: str) -> list[str]:
        return datasets.folder.find_classes(str(self.folder("train")))[0]


class ImageNet(RealDataset):
    """ImageNet-1k (ILSVRC2012) in torchvision's layout; its labelled `val` split is the test split."""

    name = "imagenet"
    kinds = ("classification",)
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"classification": (1281167, 50000, 1000)}
    layout = (
        "ROOT/ILSVRC2012_img_train.tar, ROOT/ILSVRC2012_img_val.tar and ROOT/ILSVRC2012_devkit_t12.tar.gz "
        "(or the train/ and val/ folders torchvision extracts from them, with meta.bin)"
    )

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        return datasets.ImageNet(str(Path(self.options.root).expanduser()), split=source_split)

    def class_names(self, kind: str) -> list[str]:
        return [names[0] for names in self.raw(kind, "val").classes]  # type: ignore[attr-defined]


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [ImageFolder, ImageNet]

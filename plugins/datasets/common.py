"""What the real dataset plugins share: options, the validation holdout, subsets, and augmentations.

Each real dataset has a labelled training split and a labelled evaluation split (CIFAR's
test batch, VOC's or COCO's val, ...). `bench` needs three: the `val` split that model
selection may look at is carved out of the training split (a fixed random `val_fraction`),
and the dataset's evaluation split is `test`, never seen before the final evaluation.

Augmentations are torchvision.transforms.v2 on tv_tensors, so images, boxes and masks move
together. Images leave as float tensors in [0, 1]; normalisation belongs to the model (the
backbone's weights say which mean and std).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field
from torch.utils.data import Subset
from torchvision import tv_tensors
from torchvision.transforms import v2

from harness import BenchError, Dataset, Options

IGNORE = 255


class RealDatasetOptions(Options):
    #: folder holding the dataset in its release layout
    root: str
    #: fetch it into `root` when torchvision can and it is missing
    download: bool = False
    #: use at most this many images of each split (quick runs); None: all
    limit: Annotated[int, Field(ge=1)] | None = None
    #: share of the training split held out as the validation split
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: training and evaluation image size (classification: square crops; segmentation: square resize)
    image_size: Annotated[int, Field(ge=16, le=2048)] = 224
    #: random crops and flips on the training split
    augment: bool = True
    #: seed of the validation holdout and of `limit`'s subset
    seed: int = 0


class RealDataset(Dataset):
    """A dataset read from its release layout; subclasses give the raw splits and class names."""

    Options: ClassVar[type[Options]] = RealDatasetOptions
    options: RealDatasetOptions
    #: the dataset's own name of its training and evaluation splits
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "val"}
    #: what the folder must hold, for the error when it does not
    layout: ClassVar[str] = ""
    #: torchvision can download it (`download = true`)
    downloadable: ClassVar[bool] = False
    #: per task kind: (images in the source training split, in the source test split, classes) of
    #: the full release, for `bench plan` on a machine without the files
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {}

    @abstractmethod
    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        """(PIL image, target) pairs of a source split; targets as `Dataset` documents them."""

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        source = self.source_splits["test" if split == "test" else "train"]
        try:
            data = self.raw(kind, source)
        except (FileNotFoundError, RuntimeError, OSError) as exc:
            raise self.missing(exc) from None
        indices = list(range(len(data)))  # type: ignore[arg-type]
        if split != "test":
            order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(self.options.seed)).tolist()
            held = max(1, round(self.options.val_fraction * len(order)))
            indices = sorted(order[:held] if split == "val" else order[held:])
        if self.options.limit is not None:
            indices = indices[: self.options.limit]
        transform = self.transform(kind, train=split == "train" and self.options.augment)
        return Transformed(Subset(data, indices), transform)

    def shape(self, kind: str) -> tuple[dict[str, int], int]:
        """Split sizes and classes from the files, or from the release's nominal sizes when they are absent."""
        try:
            return super().shape(kind)
        except BenchError:
            if kind not in self.nominal:
                raise
        train, test, classes = self.nominal[kind]
        if self.options.limit is not None:
            train, test = min(train, self.options.limit), min(test, self.options.limit)
        held = max(1, round(self.options.val_fraction * train))
        return {"train": train - held, "val": held, "test": test}, classes

    def missing(self, exc: BaseException) -> BenchError:
        root = Path(self.options.root).expanduser()
        hint = "; or set download = true" if self.downloadable else ""
        return BenchError(f"{self.name}: cannot read {root}: {exc}; expected {self.expected_layout()}{hint}")

    def expected_layout(self) -> str:
        return self.layout

    def transform(self, kind: str, train: bool) -> v2.Transform:
        size = self.options.image_size
        if kind == "classification":
            steps: list[v2.Transform] = (
                [v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()]
                if train
                else [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
            )
        elif kind == "segmentation":
            steps = (
                [v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True), v2.RandomHorizontalFlip()]
                if train
                else [v2.Resize((size, size), antialias=True)]
            )
        else:  # detection: Faster R-CNN resizes itself (min_size / max_size)
            steps = [v2.RandomHorizontalFlip()] if train else []
        tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        if kind == "detection":
            tail.append(v2.SanitizeBoundingBoxes(labels_getter=_box_fields))
        return v2.Compose([*steps, *tail])


def _box_fields(sample: Any) -> tuple[torch.Tensor, ...]:
    """What SanitizeBoundingBoxes drops together with a degenerate box."""
    target = sample[1]
    return (target["labels"], target["iscrowd"])


class Transformed(torch.utils.data.Dataset):
    """Applies a v2 transform to (image, target) with targets wrapped as tv_tensors, then unwraps them."""

    def __init__(self, data: torch.utils.data.Dataset, transform: v2.Transform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, target = self.data[index]
        if isinstance(target, dict):  # detection
            size = (image.height, image.width)
            target = {**target, "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=size)}
            image, target = self.transform(image, target)
            return image, {k: v.as_subclass(torch.Tensor) for k, v in target.items()}
        if isinstance(target, torch.Tensor):  # segmentation mask
            image, mask = self.transform(image, tv_tensors.Mask(target))
            return image, mask.as_subclass(torch.Tensor).squeeze(0).long()
        return self.transform(image), int(target)


class MapTargets(torch.utils.data.Dataset):
    """A dataset whose targets pass through `convert` (a mask's ids to class indices, an XML tree to boxes)."""

    def __init__(self, data: torch.utils.data.Dataset, convert: Callable[[Any], Any]) -> None:
        self.data = data
        self.convert = convert

    def __len__(self) -> int:
        return len(self.data)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image, target = self.data[index]
        return image, self.convert(target)


def detection_target(boxes: list[list[float]], labels: list[int], ignored: list[bool]) -> dict[str, torch.Tensor]:
    """Boxes (xyxy, pixels), labels (0..C-1) and `iscrowd` (1: ignored in evaluation, not trained on)."""
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "iscrowd": torch.tensor(ignored, dtype=torch.int64),
    }

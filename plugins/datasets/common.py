"""What the real dataset plugins share: options, the validation holdout, subsets, and augmentations.

Each real dataset has a labelled training split and a labelled evaluation split (CIFAR's
test batch, VOC's or COCO's val, ...). `bench` needs three: the `val` split that model
selection may look at is carved out of the training split (a fixed random `val_fraction`),
and the dataset's evaluation split is `test`, never seen before the final evaluation. `limit`
then keeps a seeded random subset of each split, class-stratified for classification
(`limited_subset`), never the first images of a source split that is often sorted by class.

Augmentations are torchvision.transforms.v2 on tv_tensors, so images, boxes and masks move
together. Images leave as float tensors in [0, 1]; normalisation belongs to the model (the
backbone's weights say which mean and std).

Detection boxes are clamped to the image on every split (as torchvision's references do). Only
on the training split are boxes that have no area left after clamping dropped (Faster R-CNN
cannot train on them); the val and test splits keep every annotation as ground truth, as
COCOeval does. `box_statistics` counts, from the annotations alone, what the training split
clamps and drops; the runner records it in the cell's `data`.
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
#: the detection target's entries that hold one value per box
PER_BOX = ("boxes", "labels", "iscrowd", "area")


class RealDatasetOptions(Options):
    #: folder holding the dataset in its release layout
    root: str
    #: fetch it into `root` when torchvision can and it is missing
    download: bool = False
    #: use at most this many images of each split (quick runs): a random subset drawn with `seed`,
    #: class-stratified for classification; None: all
    limit: Annotated[int, Field(ge=1)] | None = None
    #: share of the training split held out as the validation split
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    #: training and evaluation image size (classification: square crops; segmentation: square resize)
    image_size: Annotated[int, Field(ge=16, le=2048)] = 224
    #: random crops and flips on the training split
    augment: bool = True
    #: random horizontal flips among the augmentations (off for digits, text, anything with a handedness)
    flip: bool = True
    #: classification: hold out `val_fraction` of each class (each class's share within one image)
    #: rather than a random subset of the whole split; off by default, which keeps earlier results comparable
    stratify: bool = False
    #: seed of the validation holdout and of `limit`'s subset
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0


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

    def deterministic(self, kind: str, split: str) -> bool:
        return split != "train" or not self.options.augment

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        data = self._raw(kind, split)
        indices = self.split_indices(kind, split, data)
        augment = split == "train" and self.options.augment
        transform = self.transform(kind, train=augment, drop_degenerate=split == "train")
        return Transformed(Subset(data, indices), transform)

    def _raw(self, kind: str, split: str) -> torch.utils.data.Dataset:
        """The source split under `split`, read once per dataset object (train and val share one)."""
        source = self.source_splits["test" if split == "test" else "train"]
        cache: dict[tuple[str, str], torch.utils.data.Dataset] = self.__dict__.setdefault("_raw_splits", {})
        if (kind, source) not in cache:
            try:
                cache[kind, source] = self.raw(kind, source)
            except (FileNotFoundError, RuntimeError, OSError) as exc:
                raise self.missing(exc) from None
        return cache[kind, source]

    def split_indices(self, kind: str, split: str, data: torch.utils.data.Dataset) -> list[int]:
        """Indices of `split` in its source split: the validation holdout (stratified or not), then `limit`'s
        seeded subset of what is left (`limited_subset`)."""
        indices = list(range(len(data)))  # type: ignore[arg-type]
        if split != "test":
            order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(self.options.seed)).tolist()
            held_count = max(1, round(self.options.val_fraction * len(order)))
            if self.options.stratify and kind == "classification":
                held = stratified_holdout(order, _labels(data), held_count)
            else:
                held = set(order[:held_count])
            indices = sorted(i for i in order if (i in held) == (split == "val"))
        if self.options.limit is not None and self.options.limit < len(indices):
            labels = _labels(data) if kind == "classification" else None
            indices = limited_subset(indices, labels, self.options.limit, self.options.seed)
        return indices

    def box_statistics(self, kind: str, split: str) -> dict[str, int]:
        """What the detection pipeline does to `split`'s boxes, counted from the annotations alone.

        `{split}_boxes`: annotated boxes; `{split}_boxes_clamped`: boxes that reach outside the image
        and are clamped to it; `{split}_boxes_dropped`: boxes with no area after clamping, left out of
        training (only the training split drops any). Deterministic: no augmentation takes part.
        """
        if kind != "detection":
            return {}
        cache: dict[tuple[str, str], dict[str, int]] = self.__dict__.setdefault("_box_statistics", {})
        if (kind, split) not in cache:
            data = self._raw(kind, split)
            boxes = clamped = dropped = 0
            for i in self.split_indices(kind, split, data):
                target, (height, width) = target_and_size(data, i)
                before = target["boxes"].reshape(-1, 4)
                after = clamp_boxes(before, height, width)
                boxes += len(before)
                clamped += int((after != before).any(dim=1).sum())
                if split == "train":
                    dropped += int((~non_degenerate(after)).sum())
            cache[kind, split] = {f"{split}_boxes": boxes, f"{split}_boxes_clamped": clamped}
            if split == "train":
                cache[kind, split][f"{split}_boxes_dropped"] = dropped
        return dict(cache[kind, split])

    def data_report(self, kind: str, split: str) -> dict[str, Any]:
        return self.box_statistics(kind, split)

    def shape(self, kind: str) -> tuple[dict[str, int], int]:
        """Split sizes and classes from the files, or from the release's nominal sizes when they are absent."""
        try:
            return super().shape(kind)
        except BenchError:
            if kind not in self.nominal:
                raise
        train, test, classes = self.nominal[kind]
        held = max(1, round(self.options.val_fraction * train))
        sizes = {"train": train - held, "val": held, "test": test}
        if self.options.limit is not None:  # as `split_indices`: the holdout first, then `limit` per split
            sizes = {split: min(count, self.options.limit) for split, count in sizes.items()}
        return sizes, classes

    def missing(self, exc: BaseException) -> BenchError:
        root = Path(self.options.root).expanduser()
        hint = "; or set download = true" if self.downloadable else ""
        return BenchError(f"{self.name}: cannot read {root}: {exc}; expected {self.expected_layout()}{hint}")

    def expected_layout(self) -> str:
        return self.layout

    def transform(self, kind: str, train: bool, drop_degenerate: bool = False) -> v2.Transform:
        """`train`: the augmentations; `drop_degenerate` (the training split): detection boxes without area go."""
        size = self.options.image_size
        flip: list[v2.Transform] = [v2.RandomHorizontalFlip()] if self.options.flip else []
        if kind == "classification":
            steps: list[Any] = (
                [v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True), *flip]
                if train
                else [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
            )
        elif kind == "segmentation":
            steps = (
                [v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True), *flip]
                if train
                else [v2.Resize((size, size), antialias=True)]
            )
        else:  # detection: Faster R-CNN resizes itself (min_size / max_size)
            steps = [v2.ClampBoundingBoxes(), *(flip if train else [])]
        tail: list[Any] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
        if kind == "detection" and drop_degenerate:
            tail.append(drop_degenerate_boxes)
        return v2.Compose([*steps, *tail])


def clamp_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """xyxy boxes clamped to a `height` x `width` image (what v2.ClampBoundingBoxes does)."""
    limits = torch.tensor([width, height, width, height], dtype=boxes.dtype)
    return torch.minimum(boxes.clamp(min=0), limits)


def non_degenerate(boxes: torch.Tensor) -> torch.Tensor:
    """Which xyxy boxes have a positive width and height."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def drop_degenerate_boxes(image: Any, target: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Leaves out boxes (and their labels, `iscrowd` and `area`) with no area: Faster R-CNN cannot train on them."""
    keep = non_degenerate(target["boxes"])
    if bool(keep.all()):
        return image, target
    return image, {k: v[keep] if k in PER_BOX else v for k, v in target.items()}


def target_and_size(data: Any, index: int) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
    """A detection target and its image's (height, width), from the annotations when the reader can."""
    while isinstance(data, Subset):
        data, index = data.dataset, data.indices[index]
    if hasattr(data, "target_and_size"):
        return data.target_and_size(index)  # type: ignore[no-any-return]
    image, target = data[index]
    return target, (image.height, image.width)


def _labels(data: Any) -> list[int]:
    """Class labels of a classification source split; torchvision's readers keep them in `targets`."""
    targets = getattr(data, "targets", None)
    if targets is not None:
        return [int(t) for t in targets]
    return [int(data[i][1]) for i in range(len(data))]


def stratified_holdout(order: list[int], labels: list[int], count: int) -> set[int]:
    """`count` indices, each class held out in proportion to its size (largest remainders, ties in class
    order), so each class's share of the holdout is within one image of `count / len(labels)` of it.
    Which images of a class: the first ones in `order` (a seeded permutation)."""
    by_class: dict[int, list[int]] = {}
    for i in order:
        by_class.setdefault(labels[i], []).append(i)
    fraction = count / len(labels)
    quota = {c: int(fraction * len(members)) for c, members in by_class.items()}
    remainders = sorted(by_class, key=lambda c: (-(fraction * len(by_class[c]) - quota[c]), c))
    for c in remainders[: max(0, count - sum(quota.values()))]:
        quota[c] += 1
    return {i for c, members in by_class.items() for i in members[: quota[c]]}


def limited_subset(indices: list[int], labels: list[int] | None, limit: int, seed: int) -> list[int]:
    """`limit` of `indices` (a split, in any order) drawn at random with `seed`, in ascending order.

    With `labels` (a classification source split's labels, by source index) the draw is stratified:
    each class of the split keeps its share, within one image (`stratified_holdout`'s largest
    remainders), and which images of a class stay is the seeded permutation's choice. Without
    labels (detection, segmentation) it is a plain seeded random subset. Never the first `limit`:
    source splits are often sorted by class (an ImageFolder tree), so the first images are a few
    classes only.
    """
    if limit >= len(indices):
        return list(indices)
    # a stream of its own: the holdout's permutation is seeded with `seed` itself (at most 2**32 - 1)
    generator = torch.Generator().manual_seed(seed + 2**32)
    order = torch.randperm(len(indices), generator=generator).tolist()
    kept = set(order[:limit]) if labels is None else stratified_holdout(order, [labels[i] for i in indices], limit)
    return sorted(indices[p] for p in kept)


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

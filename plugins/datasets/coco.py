"""COCO instances (detection), read from the release's JSON: `annotations/instances_<split><year>.json`.

Category ids (1..90 with gaps) map to 0..C-1 in id order. Boxes are COCO's [x, y, w, h] made
xyxy; crowd annotations stay as `iscrowd` boxes, which COCOeval treats as ignore regions and
training leaves out, as COCO's own evaluation does. Every annotation is read, a zero-width one
too: the transforms clamp boxes to the image and drop those without area from training only.
Each annotation's `area` (for instances, its mask's area, smaller than its box) goes to the
metric as the object's size, as COCOeval sizes objects: `map_small` / `medium` / `large` are
COCOeval's. An area of 0 or none: the metric takes the box's area.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from bench_plugins.datasets.common import RealDataset, RealDatasetOptions, detection_target
from PIL import Image

from harness import Dataset, hookimpl


class COCOOptions(RealDatasetOptions):
    year: Literal["2014", "2017"] = "2017"


class COCO(RealDataset):
    """COCO instances: 80 classes; train2017 for training, val2017 as the test split."""

    name = "coco"
    kinds = ("detection",)
    Options = COCOOptions
    options: COCOOptions
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "val"}
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"detection": (118287, 5000, 80)}

    def expected_layout(self) -> str:
        y = self.options.year
        return f"ROOT/annotations/instances_{{train,val}}{y}.json and the images in ROOT/train{y}/, ROOT/val{y}/"

    def annotations(self, source_split: str) -> dict[str, Any]:
        path = (
            Path(self.options.root).expanduser() / "annotations" / f"instances_{source_split}{self.options.year}.json"
        )
        with path.open() as f:
            return json.load(f)

    @cached_property
    def categories(self) -> list[dict[str, Any]]:
        return sorted(self.annotations("val")["categories"], key=lambda c: c["id"])

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        folder = Path(self.options.root).expanduser() / f"{source_split}{self.options.year}"
        index = {c["id"]: i for i, c in enumerate(self.categories)}
        return _Instances(self.annotations(source_split), folder, index)

    def class_names(self, kind: str) -> list[str]:
        return [c["name"] for c in self.categories]


class _Instances(torch.utils.data.Dataset):
    def __init__(self, document: dict[str, Any], folder: Path, category_index: dict[int, int]) -> None:
        self.images = sorted(document["images"], key=lambda i: i["id"])
        self.folder = folder
        self.category_index = category_index
        self.by_image: dict[int, list[dict[str, Any]]] = {}
        for annotation in document["annotations"]:
            self.by_image.setdefault(annotation["image_id"], []).append(annotation)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Image.Image, dict[str, torch.Tensor]]:
        image = Image.open(self.folder / self.images[i]["file_name"]).convert("RGB")
        return image, self.target(i)

    def target_and_size(self, i: int) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
        return self.target(i), (int(self.images[i]["height"]), int(self.images[i]["width"]))

    def target(self, i: int) -> dict[str, torch.Tensor]:
        boxes, labels, crowd, areas = [], [], [], []
        for a in self.by_image.get(self.images[i]["id"], []):
            x, y, w, h = a["bbox"]
            boxes.append([x, y, x + w, y + h])
            labels.append(self.category_index[a["category_id"]])
            crowd.append(bool(a.get("iscrowd", 0)))
            areas.append(float(a.get("area", 0)))
        target = detection_target(boxes, labels, crowd)
        target["area"] = torch.tensor(areas, dtype=torch.float32)
        return target


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [COCO]

"""PASCAL VOC: detection (2007 / 2012, XML annotations) and segmentation (2012, PNG masks, void 255).

Detection: objects marked `difficult` are kept as `iscrowd` boxes, so they are neither trained
on nor counted as misses. The COCO-style metrics treat them as COCOeval's crowd regions (a
detection mostly inside one is ignored); the detection task's `metric_protocol = "voc07"` or
`"voc12"` adds the devkit's own AP, where only a detection matched to a difficult box at
IoU >= 0.5 is ignored. Box corners are 1-based pixel indices in the XML and become 0-based xyxy
here, as torchvision's references convert them (so an `xmin` of 0 becomes -1, clamped to the
image by the transforms).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from bench_plugins.datasets.common import MapTargets, RealDataset, RealDatasetOptions, detection_target
from PIL import Image
from torchvision import datasets
from torchvision.datasets.voc import ET_parse

from harness import Dataset, hookimpl

CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip


class VOCOptions(RealDatasetOptions):
    year: Literal["2007", "2012"] = "2012"


class VOC(RealDataset):
    """PASCAL VOC 2007/2012: detection (20 classes), segmentation (21 with background); downloadable."""

    name = "voc"
    kinds = ("detection", "segmentation")
    Options = VOCOptions
    options: VOCOptions
    downloadable = True
    #: VOC 2012: detection train / val, segmentation train / val
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {
        "detection": (5717, 5823, 20),
        "segmentation": (1464, 1449, 21),
    }
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "val"}

    def expected_layout(self) -> str:
        return f"ROOT/VOCdevkit/VOC{self.options.year}/ with JPEGImages, Annotations, SegmentationClass and ImageSets"

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        root = str(Path(self.options.root).expanduser())
        year, download = self.options.year, self.options.download
        if kind == "detection":
            return _Detection(datasets.VOCDetection(root, year=year, image_set=source_split, download=download), _boxes)
        return MapTargets(
            datasets.VOCSegmentation(root, year=year, image_set=source_split, download=download), _classes
        )

    def class_names(self, kind: str) -> list[str]:
        return CLASSES if kind == "detection" else ["background", *CLASSES]


class _Detection(MapTargets):
    """VOC detection; `target_and_size` reads an image's boxes and size from its XML alone."""

    data: datasets.VOCDetection

    def target_and_size(self, index: int) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
        annotation = self.data.parse_voc_xml(ET_parse(self.data.annotations[index]).getroot())
        size = annotation["annotation"].get("size")
        if size is None:  # not in the XML: the image's own (PIL reads only its header)
            with Image.open(self.data.images[index]) as image:
                return _boxes(annotation), (image.height, image.width)
        return _boxes(annotation), (int(size["height"]), int(size["width"]))


def _boxes(annotation: dict[str, Any]) -> dict[str, torch.Tensor]:
    """VOC's parsed XML as boxes (1-based corners made 0-based), labels and `difficult` as `iscrowd`."""
    objects = annotation["annotation"].get("object", [])
    boxes, labels, difficult = [], [], []
    for obj in objects if isinstance(objects, list) else [objects]:
        box = obj["bndbox"]
        boxes.append([float(box["xmin"]) - 1, float(box["ymin"]) - 1, float(box["xmax"]), float(box["ymax"])])
        labels.append(CLASSES.index(obj["name"]))
        difficult.append(obj.get("difficult", "0") == "1")
    return detection_target(boxes, labels, difficult)


def _classes(mask: Any) -> torch.Tensor:
    """A palette PNG: the palette index is the class, 255 the void border."""
    return torch.from_numpy(np.asarray(mask, dtype=np.int64))


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [VOC]

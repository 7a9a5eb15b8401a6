"""ADE20K scene parsing in its ADEChallengeData2016 release layout: 150 classes, 0 ("other") ignored.

Masks store 0 for unlabelled pixels and 1..150 for the classes; here the classes become
0..149 and 0 becomes 255, the ignore label every task shares.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from bench_plugins.datasets.common import IGNORE, RealDataset
from PIL import Image

from harness import Dataset, hookimpl

CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
]  # fmt: skip
#: mask value -> class index: 0 (other) -> 255, k -> k - 1
TO_CLASS = np.array([IGNORE, *range(150)] + [IGNORE] * 105, dtype=np.int64)


class ADE20K(RealDataset):
    """ADE20K (SceneParsing150): 20210 training images, its 2000 validation images as the test split."""

    name = "ade20k"
    kinds = ("segmentation",)
    source_splits: ClassVar[dict[str, str]] = {"train": "training", "test": "validation"}
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"segmentation": (20210, 2000, 150)}
    layout = (
        "ROOT/ADEChallengeData2016/images/{training,validation}/*.jpg and "
        "ROOT/ADEChallengeData2016/annotations/{training,validation}/*.png"
    )

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        return _Scenes(Path(self.options.root).expanduser() / "ADEChallengeData2016", source_split)

    def class_names(self, kind: str) -> list[str]:
        return CLASSES


class _Scenes(torch.utils.data.Dataset):
    def __init__(self, root: Path, split: str) -> None:
        self.images = sorted((root / "images" / split).glob("*.jpg"))
        self.masks = root / "annotations" / split
        if not self.images:
            raise FileNotFoundError(f"no images in {root / 'images' / split}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, torch.Tensor]:
        path = self.images[index]
        mask = np.asarray(Image.open(self.masks / f"{path.stem}.png"), dtype=np.uint8)
        return Image.open(path).convert("RGB"), torch.from_numpy(TO_CLASS[mask])


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [ADE20K]

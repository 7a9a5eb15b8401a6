"""Cityscapes fine annotations for segmentation: `*_gtFine_labelIds.png` mapped to the 19 train ids, 255 ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from bench_plugins.datasets.common import IGNORE, MapTargets, RealDataset
from torchvision import datasets

from harness import Dataset, hookimpl

#: labelId -> trainId (0..18), everything else (void, ignored in evaluation) -> 255
TRAIN_IDS = np.full(256, IGNORE, dtype=np.int64)
for _c in datasets.Cityscapes.classes:
    if not _c.ignore_in_eval and 0 <= _c.id < 256:
        TRAIN_IDS[_c.id] = _c.train_id
CLASSES = [c.name for c in sorted(datasets.Cityscapes.classes, key=lambda c: c.train_id) if not c.ignore_in_eval]


class Cityscapes(RealDataset):
    """Cityscapes fine (19 classes): 2975 training images, its 500 `val` images as the test split."""

    name = "cityscapes"
    kinds = ("segmentation",)
    source_splits: ClassVar[dict[str, str]] = {"train": "train", "test": "val"}
    nominal: ClassVar[dict[str, tuple[int, int, int]]] = {"segmentation": (2975, 500, 19)}
    layout = "ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png and ROOT/gtFine/<split>/<city>/*_gtFine_labelIds.png"

    def raw(self, kind: str, source_split: str) -> torch.utils.data.Dataset:
        root = str(Path(self.options.root).expanduser())
        return MapTargets(
            datasets.Cityscapes(root, split=source_split, mode="fine", target_type="semantic"), _train_ids
        )

    def class_names(self, kind: str) -> list[str]:
        return CLASSES


def _train_ids(label_ids: Any) -> torch.Tensor:
    return torch.from_numpy(TRAIN_IDS[np.asarray(label_ids, dtype=np.uint8)])


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [Cityscapes]

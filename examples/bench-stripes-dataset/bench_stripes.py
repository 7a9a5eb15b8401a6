"""`stripes`: generated images of stripes whose direction is the class, for every task kind.

Classification: the whole image is striped, in one of the `directions`. Detection and
segmentation: one to `max_objects` striped rectangles on a plain noisy background; a box per
rectangle that stays visible, a mask with 0 for the background and 1..C for the directions.
Every image is drawn from (seed, split, index) alone, so every read gives the same tensors.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field, field_validator

from harness import Dataset, Options, hookimpl

#: a direction's unit normal: stripes run across it
DIRECTIONS = {
    "horizontal": (0.0, 1.0),
    "vertical": (1.0, 0.0),
    "diagonal": (0.7071, 0.7071),
    "antidiagonal": (0.7071, -0.7071),
}
SPLITS = {"train": 0, "val": 1, "test": 2}


class StripesOptions(Options):
    directions: Annotated[list[str], Field(min_length=2)] = list(DIRECTIONS)
    image_size: Annotated[int, Field(ge=16, le=512)] = 32
    train: Annotated[int, Field(ge=1)] = 256
    val: Annotated[int, Field(ge=1)] = 64
    test: Annotated[int, Field(ge=1)] = 64
    max_objects: Annotated[int, Field(ge=1, le=8)] = 2
    seed: int = 0

    @field_validator("directions")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [d for d in value if d not in DIRECTIONS]
        if unknown or len(set(value)) != len(value):
            raise ValueError(f"directions must be distinct names among {', '.join(DIRECTIONS)}; got {value}")
        return value


def stripes(rng: np.random.Generator, size: int, direction: str) -> np.ndarray:
    """A (size, size, 3) image of two-coloured stripes across `direction`'s normal."""
    nx, ny = DIRECTIONS[direction]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period, phase = rng.uniform(4, 8), rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (xx * nx + yy * ny) / period + phase) > 0
    light, dark = rng.uniform(0.6, 1.0, 3), rng.uniform(0.0, 0.4, 3)
    return np.where(wave[..., None], light, dark).astype(np.float32)


class StripesSplit(torch.utils.data.Dataset):
    def __init__(self, options: StripesOptions, kind: str, split: str) -> None:
        self.options, self.kind, self.split = options, kind, split

    def __len__(self) -> int:
        return int(getattr(self.options, self.split))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        opts, size = self.options, self.options.image_size
        rng = np.random.default_rng([opts.seed, SPLITS[self.split], index])
        if self.kind == "classification":
            label = index % len(opts.directions)  # classes take turns: balanced splits
            return _tensor(stripes(rng, size, opts.directions[label])), label
        image = np.clip(rng.uniform(0.3, 0.7, 3) + rng.normal(0, 0.05, (size, size, 3)), 0, 1).astype(np.float32)
        visible = np.full((size, size), -1, dtype=np.int64)
        labels = []
        for k in range(int(rng.integers(1, opts.max_objects + 1))):
            label = int(rng.integers(len(opts.directions)))
            w, h = rng.integers(size // 4, size // 2 + 1, size=2)
            x, y = rng.integers(0, size - w + 1), rng.integers(0, size - h + 1)
            image[y : y + h, x : x + w] = stripes(rng, size, opts.directions[label])[y : y + h, x : x + w]
            visible[y : y + h, x : x + w] = k
            labels.append(label)
        if self.kind == "segmentation":
            lookup = np.array([0, *[label + 1 for label in labels]], dtype=np.int64)
            return _tensor(image), torch.from_numpy(lookup[visible + 1])
        boxes, kept = [], []
        for k, label in enumerate(labels):
            ys, xs = np.nonzero(visible == k)
            if len(ys):  # a rectangle hidden under later ones has no box
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                kept.append(label)
        target = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(kept, dtype=torch.int64),
        }
        return _tensor(image), target


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) in [0, 1] to the (3, H, W) float tensor every task reads; normalising is the model's job."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class Stripes(Dataset):
    """Generated stripes whose direction is the class; offline and deterministic, for all three task kinds."""

    name = "stripes"
    kinds = ("classification", "detection", "segmentation")
    Options = StripesOptions
    options: StripesOptions  # validated by the harness before the constructor runs

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        return StripesSplit(self.options, kind, split)

    def class_names(self, kind: str) -> list[str]:
        names = list(self.options.directions)
        return ["background", *names] if kind == "segmentation" else names

    def shape(self, kind: str) -> tuple[dict[str, int], int]:
        """Known from the options alone: planning draws no image."""
        sizes = {split: int(getattr(self.options, split)) for split in self.splits}
        return sizes, len(self.class_names(kind))

    def deterministic(self, kind: str, split: str) -> bool:
        """No random augmentation: a cached linear probe may compute features once for every epoch."""
        return True


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [Stripes]

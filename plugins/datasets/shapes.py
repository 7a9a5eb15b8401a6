"""`shapes`: a generated scene dataset that serves classification, detection and segmentation.

Every image is drawn from its (seed, split, index) alone: coloured shapes, rotated and
scaled at random, on a textured background. Classification images hold one shape (its
class is the label); detection and segmentation images hold one to `max_objects` shapes,
possibly overlapping, with boxes and masks taken from what stays visible. Segmentation
masks use 0 for background, 1..C for the shapes and 255 (void) on a one-pixel band around
each object, as PASCAL VOC does. Two suites that pick different `shapes` get disjoint
label spaces: that is how the quickstart pretrains on one domain and transfers to another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from harness import Dataset, Options, hookimpl

Mask = np.ndarray
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], Mask]] = {
    "circle": lambda u, v: u**2 + v**2 <= 1.0,
    "square": lambda u, v: np.maximum(abs(u), abs(v)) <= 0.8,
    "triangle": lambda u, v: (v <= 0.7) & (abs(u) <= (v + 0.9) / 1.6 * 0.95),
    "cross": lambda u, v: ((abs(u) <= 0.3) & (abs(v) <= 0.95)) | ((abs(v) <= 0.3) & (abs(u) <= 0.95)),
    "ring": lambda u, v: (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.3),
    "diamond": lambda u, v: abs(u) + abs(v) <= 1.0,
    "hexagon": lambda u, v: (abs(v) <= 0.85) & (abs(u) * 0.866 + abs(v) * 0.5 <= 0.866),
    "star": lambda u, v: np.hypot(u, v) <= 0.55 + 0.4 * np.cos(5 * np.arctan2(v, u)),
    "ellipse": lambda u, v: u**2 + (v / 0.5) ** 2 <= 1.0,
    "semicircle": lambda u, v: (u**2 + v**2 <= 1.0) & (v >= -0.1),
    "bar": lambda u, v: (abs(u) <= 0.95) & (abs(v) <= 0.25),
    "arrow": lambda u, v: ((abs(v) <= 0.2) & (u >= -0.9) & (u <= 0.2)) | ((u > 0.2) & (abs(v) <= 0.95 - u)),
}
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
MIN_VISIBLE_PIXELS = 12


class ShapesOptions(Options):
    shapes: Annotated[list[str], Field(min_length=2)] = ["circle", "square", "triangle", "cross", "ring"]
    image_size: Annotated[int, Field(ge=16, le=1024)] = 64
    train: Annotated[int, Field(ge=1)] = 512
    val: Annotated[int, Field(ge=1)] = 128
    test: Annotated[int, Field(ge=1)] = 256
    max_objects: Annotated[int, Field(ge=1, le=16)] = 3
    #: object radius as a fraction of the image size, (min, max)
    object_scale: tuple[float, float] = (0.12, 0.28)
    #: amplitude of background texture and pixel noise; harder when higher
    clutter: Annotated[float, Field(ge=0, le=1)] = 0.5
    #: the seed numpy draws the images from: 0 to 2**32 - 1
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0

    @field_validator("shapes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SHAPES]
        if unknown:
            raise ValueError(f"unknown shapes {unknown}; allowed: {', '.join(SHAPES)}")
        if len(set(value)) != len(value):
            raise ValueError("shapes must be distinct")
        return value

    @model_validator(mode="after")
    def _scale(self) -> ShapesOptions:
        low, high = self.object_scale
        if not 0.02 <= low <= high <= 0.5:
            raise ValueError("object_scale must satisfy 0.02 <= min <= max <= 0.5")
        return self


def _background(rng: np.random.Generator, size: int, clutter: float) -> np.ndarray:
    """Smooth colour noise plus stripes of random frequency and direction, (H, W, 3) in [0, 1]."""
    coarse = torch.from_numpy(rng.random((1, 3, 5, 5), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].numpy()
    base = rng.random(3, dtype=np.float32)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * rng.uniform(2, 8) * (xx * np.cos(angle) + yy * np.sin(angle)))
    image = (1 - clutter) * base + clutter * (0.7 * smooth + 0.3 * (0.5 + 0.5 * stripes))
    return np.clip(image.transpose(1, 2, 0), 0, 1)


def render(
    rng: np.random.Generator,
    options: ShapesOptions,
    n_objects: int,
    scale: tuple[float, float],
    first_class: int | None = None,
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """An image (H, W, 3), the class of each object, and the map of which object is visible where.

    `first_class` fixes the first object's class (the others are drawn at random).
    """
    size = options.image_size
    image = _background(rng, size, options.clutter)
    visible = np.full((size, size), -1, dtype=np.int64)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    classes = []
    for k in range(n_objects):
        drawn = int(rng.integers(len(options.shapes)))
        cls = first_class if k == 0 and first_class is not None else drawn
        radius = rng.uniform(*scale) * size
        cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, size=2)
        theta = rng.uniform(0, 2 * np.pi)
        dx, dy = (xx - cx) / radius, (yy - cy) / radius
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        mask = SHAPES[options.shapes[cls]](u, v)
        colour = rng.random(3, dtype=np.float32)
        if np.abs(colour - image[mask].mean(axis=0) if mask.any() else 0).mean() < 0.25:
            colour = 1.0 - colour
        shade = 0.85 + 0.15 * (u[mask] - v[mask]) / 2
        image[mask] = np.clip(colour[None, :] * shade[:, None], 0, 1)
        visible[mask] = k
        classes.append(cls)
    noise = rng.normal(0, 0.03 * options.clutter, size=image.shape).astype(np.float32)
    return np.clip(image + noise, 0, 1), classes, visible


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 4-neighbourhood holds another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    return edge


class ShapesSplit(torch.utils.data.Dataset):
    def __init__(self, options: ShapesOptions, kind: str, split: str) -> None:
        self.options, self.kind, self.split = options, kind, split
        self.length = getattr(options, split)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        opts = self.options
        rng = np.random.default_rng([opts.seed, SPLIT_IDS[self.split], index])
        if self.kind == "classification":
            low, high = opts.object_scale
            # classes take turns by index, so every split is balanced and chance is 1 / classes
            scale = (max(low, 0.3), max(high, 0.45))
            image, classes, _ = render(rng, opts, 1, scale, first_class=index % len(opts.shapes))
            return _tensor(image), classes[0]
        n = int(rng.integers(1, opts.max_objects + 1))
        image, classes, visible = render(rng, opts, n, opts.object_scale)
        if self.kind == "detection":
            boxes, labels = [], []
            for k, cls in enumerate(classes):
                ys, xs = np.nonzero(visible == k)
                if len(ys) >= MIN_VISIBLE_PIXELS:
                    boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                    labels.append(cls)
            target = {
                "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
            return _tensor(image), target
        lookup = np.array([0, *[c + 1 for c in classes]], dtype=np.int64)
        mask = lookup[visible + 1]
        mask[_boundary(mask)] = 255
        return _tensor(image), torch.from_numpy(mask)


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))


class Shapes(Dataset):
    """Generated scenes of coloured shapes for all three task kinds, offline and deterministic."""

    name = "shapes"
    kinds = ("classification", "detection", "segmentation")
    Options = ShapesOptions
    options: ShapesOptions

    def deterministic(self, kind: str, split: str) -> bool:
        """Every image is drawn from a seed of its own index: the same tensors on every read."""
        return True

    def load(self, kind: str, split: str) -> torch.utils.data.Dataset:
        return ShapesSplit(self.options, kind, split)

    def class_names(self, kind: str) -> list[str]:
        names = list(self.options.shapes)
        return ["background", *names] if kind == "segmentation" else names


@hookimpl
def bench_datasets() -> list[type[Dataset]]:
    return [Shapes]

"""The generated dataset: deterministic, disjoint splits, labels consistent with the pixels."""

from __future__ import annotations

from pathlib import Path

import torch
from bench_plugins.datasets.shapes import Shapes

from harness.registry import Registry
from harness.suite import load_suite


def test_deterministic_by_seed_and_index() -> None:
    a = Shapes({"image_size": 32}).load("detection", "train")
    b = Shapes({"image_size": 32}).load("detection", "train")
    assert torch.equal(a[3][0], b[3][0]) and torch.equal(a[3][1]["boxes"], b[3][1]["boxes"])
    other_seed = Shapes({"image_size": 32, "seed": 1}).load("detection", "train")
    assert not torch.equal(a[3][0], other_seed[3][0])
    test_split = Shapes({"image_size": 32}).load("detection", "test")
    assert not torch.equal(a[3][0], test_split[3][0])


def test_split_sizes_and_image_format() -> None:
    data = Shapes({"image_size": 40, "train": 7, "val": 3, "test": 5})
    assert [len(data.load("classification", s)) for s in ("train", "val", "test")] == [7, 3, 5]
    image, label = data.load("classification", "train")[0]
    assert image.shape == (3, 40, 40) and image.dtype == torch.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert 0 <= label < 5


def test_boxes_and_masks_agree() -> None:
    data = Shapes({"image_size": 48, "max_objects": 4, "shapes": ["circle", "square", "cross"]})
    assert data.class_names("segmentation") == ["background", "circle", "square", "cross"]
    det, seg = data.load("detection", "val"), data.load("segmentation", "val")
    for i in range(20):
        _, target = det[i]
        _, mask = seg[i]
        assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}
        assert (mask == 255).any()  # a void band around objects, as in VOC
        assert len(target["boxes"]) >= 1
        for box, label in zip(target["boxes"], target["labels"], strict=True):
            x0, y0, x1, y1 = box.int().tolist()
            assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
            inside = mask[y0:y1, x0:x1]
            # the object is in its box: its class, or (thin parts) the void band around it
            assert ((inside == label + 1) | (inside == 255)).sum() >= 12
            # a tight box: every side touches the object or its band
            touched = (inside == label + 1) | (inside == 255)
            assert touched[0].any() and touched[-1].any() and touched[:, 0].any() and touched[:, -1].any()


def test_different_shape_lists_make_different_label_spaces() -> None:
    source = Shapes({"shapes": ["diamond", "star"]})
    target = Shapes({})
    assert not set(source.class_names("classification")) & set(target.class_names("classification"))


def test_classification_classes_take_turns_so_chance_is_one_in_classes() -> None:
    data = Shapes({"image_size": 16, "train": 20, "shapes": ["circle", "square", "cross", "ring"]})
    labels = [label for _, label in data.load("classification", "train")]
    assert sorted(labels) == sorted([0, 1, 2, 3] * 5)
    images = data.load("classification", "train")
    assert not torch.equal(images[0][0], images[4][0])  # same class, another drawing


def test_quickstart_segmentation_objects_span_its_feature_map() -> None:
    """The head sees at least a 4x4 map, and objects cover a good share of the pixels."""
    suite = load_suite(Path(__file__).parents[1] / "suites" / "quickstart.toml", Registry(entry_points=False))
    (seg,) = [t for t in suite.tasks if t.kind == "segmentation"]
    size, stride = seg.dataset.options["image_size"], seg.options.get("output_stride", 16)
    assert size // stride >= 4
    data = Shapes({**seg.dataset.options, "test": 32})
    masks = torch.stack([mask for _, mask in data.load("segmentation", "test")])
    valid = masks != 255
    assert ((masks > 0) & valid).sum() / valid.sum() > 0.2

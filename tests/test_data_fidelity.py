"""Data fidelity (issue 10): boxes are clamped, not silently dropped; only training drops boxes
without area, and the cell says how many; flips can be switched off; a stratified holdout keeps
each class's share; anchors must be positive; an undefined metric is reported as missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from bench_plugins.datasets.common import Transformed
from bench_plugins.reporters.cells import task_rows
from PIL import Image

from harness.driver import run_suite
from harness.errors import SuiteError
from harness.report import build_report
from harness.result import CellResult
from harness.store import Store
from harness.suite import parse_suite
from harness.testing import TINY_DETECTION
from tests.conftest import tiny_suite
from tests.test_real_datasets import COLOURS, VOC_NAMES, _covers_colour

SIZE = 48
#: (label, XML corners (1-based, inclusive), what the boxes become in 0-based xyxy after clamping)
VOC_OBJECTS = [
    (0, (0, 5, 10, 15), [0.0, 4.0, 10.0, 15.0]),  # xmin 0: -1 after the 1-based conversion, clamped to 0
    (1, (30, 30, 60, 40), [29.0, 29.0, 48.0, 40.0]),  # runs past the right edge: clamped
    (2, (50, 50, 55, 55), [48.0, 48.0, 48.0, 48.0]),  # wholly outside: no area left after clamping
    (0, (10, 10, 20, 20), [9.0, 9.0, 20.0, 20.0]),  # inside
]


def _write_voc(root: Path, names: list[str], objects=VOC_OBJECTS) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        pixels = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
        pixels[:, : SIZE // 2] = COLOURS[0]  # left half red: a flip shows
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{name}.jpg", quality=98)
        parts = "".join(
            f"<object><name>{VOC_NAMES[label]}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for label, (x0, y0, x1, y1), _ in objects
        )
        size = f"<size><width>{SIZE}</width><height>{SIZE}</height><depth>3</depth></size>"
        (voc / "Annotations" / f"{name}.xml").write_text(f"<annotation>{size}{parts}</annotation>")
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n".join(names[:4]) + "\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("\n".join(names[4:]) + "\n")
    return root


def _run_cell(tmp_path: Path, registry, kind: str, dataset: dict, options: dict | None = None) -> dict:
    suite = {
        "name": "fidelity",
        "output": str(tmp_path / "results"),
        "device": "cpu",
        "training": {"epochs": 1, "max_steps": 1, "batch_size": 2, "optimizer": "adamw", "lr": 1e-3, "threads": 2},
        "tasks": [{"name": "t", "kind": kind, "dataset": dataset, "options": options or {}}],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "full"}],
    }
    run_suite(parse_suite(suite, "fidelity.toml", registry), registry)
    (path,) = (tmp_path / "results" / "cells").glob("*.json")
    document = json.loads(path.read_text())
    assert document["status"] == "ok", document["reason"]
    return document


def test_voc_boxes_are_clamped_and_only_training_drops_degenerate_ones(registry, tmp_path: Path) -> None:
    root = _write_voc(tmp_path / "voc", [f"img{i}" for i in range(6)])
    data = registry.create("dataset", "voc", {"root": str(root), "augment": False, "val_fraction": 0.25})
    everything = [clamped for _, _, clamped in VOC_OBJECTS]
    for _, target in data.load("detection", "test"):  # every annotation stays ground truth
        assert target["boxes"].tolist() == everything and target["labels"].tolist() == [0, 1, 2, 0]
        assert target["iscrowd"].tolist() == [0, 0, 0, 0]
    for split in ("train", "val"):
        expected = everything if split == "val" else [b for b in everything if b[2] > b[0] and b[3] > b[1]]
        for _, target in data.load("detection", split):
            assert target["boxes"].tolist() == expected, split
    # 3 training images (4 minus the holdout) x 4 boxes: 3 of each image's reach outside, 1 has no area left
    counts = {"train_boxes": 12, "train_boxes_clamped": 9, "train_boxes_dropped": 3}
    assert data.data_report("detection", "train") == counts
    assert data.data_report("detection", "test") == {"test_boxes": 8, "test_boxes_clamped": 6}
    assert registry.create("dataset", "shapes").data_report("detection", "train") == {}
    options = {**TINY_DETECTION, "min_size": SIZE, "max_size": SIZE}
    document = _run_cell(tmp_path, registry, "detection", {"name": "voc", "options": {"root": str(root)}}, options)
    assert document["data"] == counts
    assert set(document["metrics"]) >= {"map", "map_small", "map_medium", "map_large", "mar_100"}


def test_voc_flip_can_be_switched_off(registry, tmp_path: Path) -> None:
    root = _write_voc(tmp_path / "voc", [f"img{i}" for i in range(6)], objects=VOC_OBJECTS[3:])
    region = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    region[:, :4] = True  # the left edge: red unless flipped
    torch.manual_seed(0)
    fixed = registry.create("dataset", "voc", {"root": str(root), "flip": False})
    for _ in range(5):
        for image, target in fixed.load("detection", "train"):
            assert target["boxes"].tolist() == [[9.0, 9.0, 20.0, 20.0]] and _covers_colour(image, region, 0)
    flipping = registry.create("dataset", "voc", {"root": str(root)})
    boxes = [t["boxes"].tolist() for _ in range(5) for _, t in flipping.load("detection", "train")]
    assert [[28.0, 9.0, 39.0, 20.0]] in boxes  # flips are on by default


def _write_coco(root: Path) -> Path:
    """One image per split; boxes: a 0.5 px wide one (kept), a zero-width one (kept for evaluation only)."""
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir(parents=True)
        Image.new("RGB", (SIZE, SIZE), COLOURS[1]).save(root / f"{split}2017" / "1.jpg")
        annotations = [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20], "iscrowd": 0, "area": 400},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [30, 5, 0.5, 10], "iscrowd": 0, "area": 5},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [40, 30, 0, 10], "iscrowd": 0, "area": 0},
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [30, 30, 30, 30], "iscrowd": 0, "area": 900},
        ]
        document = {
            "images": [{"id": 1, "file_name": "1.jpg", "width": SIZE, "height": SIZE}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}],
        }
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(document))
    return root


def test_coco_keeps_small_and_zero_width_boxes_where_they_belong(registry, tmp_path: Path) -> None:
    root = _write_coco(tmp_path / "coco")
    data = registry.create("dataset", "coco", {"root": str(root), "augment": False, "val_fraction": 0.5})
    _, test = data.load("detection", "test")[0]
    assert test["boxes"].tolist() == [[5, 5, 25, 25], [30, 5, 30.5, 15], [40, 30, 40, 40], [30, 30, 48, 48]]
    assert test["area"].tolist() == [400, 5, 0, 900]  # the annotations' own, not the clamped boxes'
    raw = data.raw("detection", "train")  # one image: the holdout would take it
    _, train = Transformed(raw, data.transform("detection", train=False, drop_degenerate=True))[0]  # what "train" does
    assert train["boxes"].tolist() == [[5, 5, 25, 25], [30, 5, 30.5, 15], [30, 30, 48, 48]]  # under 1 px: kept
    assert train["labels"].tolist() == [0, 0, 0] and train["iscrowd"].tolist() == [0, 0, 0]
    assert train["area"].tolist() == [400, 5, 900]  # dropped with its box


# --- classification: flips and the stratified holdout ------------------------------------------


def _write_folders(root: Path, sizes: dict[str, int]) -> Path:
    for split in ("train", "test"):
        for name, count in sizes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count if split == "train" else 1):
                pixels = np.zeros((32, 32, 3), dtype=np.uint8)
                pixels[:, :16], pixels[:, 16:] = COLOURS[0], COLOURS[2]  # red left, blue right
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def _flipped(image: torch.Tensor) -> bool:
    """Blue on the left edge and red on the right: only a horizontal flip puts them there."""
    left, right = image[:, :, 0].mean(dim=1), image[:, :, -1].mean(dim=1)
    return bool(left[2] > left[0] and right[0] > right[2])


def test_image_folder_flip_false_never_flips(registry, tmp_path: Path) -> None:
    root = _write_folders(tmp_path / "folders", {"a": 10, "b": 10})
    options = {"root": str(root), "image_size": 16, "val_fraction": 0.1}
    torch.manual_seed(0)
    fixed = registry.create("dataset", "image_folder", {**options, "flip": False}).load("classification", "train")
    assert not any(_flipped(fixed[i][0]) for _ in range(5) for i in range(len(fixed)))
    flipping = registry.create("dataset", "image_folder", options).load("classification", "train")
    assert any(_flipped(flipping[i][0]) for _ in range(5) for i in range(len(flipping)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_holdout_keeps_each_class_share(registry, tmp_path: Path, seed: int) -> None:
    sizes = {"a": 13, "b": 4, "c": 7, "d": 1}
    root = _write_folders(tmp_path / "folders", sizes)
    options = {"root": str(root), "val_fraction": 0.3, "seed": seed, "stratify": True}
    data = registry.create("dataset", "image_folder", options)
    raw = data.raw("classification", "train")
    val = data.split_indices("classification", "val", raw)
    train = data.split_indices("classification", "train", raw)
    assert sorted(val + train) == list(range(25)) and len(val) == round(0.3 * 25)  # as many as without strata
    labels = raw.targets
    for label, count in enumerate(sizes.values()):
        held = sum(labels[i] == label for i in val)
        assert abs(held - 0.3 * count) < 1, (label, held)
    plain = registry.create("dataset", "image_folder", {**options, "stratify": False})
    order = torch.randperm(25, generator=torch.Generator().manual_seed(seed)).tolist()
    assert plain.split_indices("classification", "val", raw) == sorted(order[:8])  # the default holdout is unchanged


# --- `limit`: a seeded subset, stratified by class, never the first images --------------------


def _write_sorted_folders(root: Path, sizes: dict[str, int]) -> Path:
    """Train and test trees with `sizes` images per class: ImageFolder reads them sorted by class."""
    for split in ("train", "test"):
        for name, count in sizes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), COLOURS[i % len(COLOURS)]).save(folder / f"{i}.png")
    return root


LIMIT_SIZES = {"a": 40, "b": 24, "c": 20, "d": 8, "e": 8}  # 100 images; the first 40 all of class a


@pytest.mark.parametrize(("split", "limit"), [("train", 30), ("val", 12), ("test", 30)])
@pytest.mark.parametrize("seed", [0, 3])
def test_limit_is_a_seeded_class_stratified_subset(registry, tmp_path: Path, split: str, limit: int, seed: int) -> None:
    """Each class keeps its share of the split, as scikit-learn's stratified split keeps it (within one
    image), whichever images the split holds in whichever order; the same seed draws the same subset."""
    from sklearn.model_selection import train_test_split

    root = _write_sorted_folders(tmp_path / "folders", LIMIT_SIZES)
    options = {"root": str(root), "val_fraction": 0.25, "seed": seed, "stratify": True}  # 2 of d and e in val
    whole = registry.create("dataset", "image_folder", options)
    raw = whole.raw("classification", "test" if split == "test" else "train")
    base = whole.split_indices("classification", split, raw)  # the split without a limit
    labels = [raw.targets[i] for i in base]
    limited = registry.create("dataset", "image_folder", {**options, "limit": limit})
    subset = limited.split_indices("classification", split, raw)
    assert len(subset) == limit == len(limited.load("classification", split))
    assert set(subset) <= set(base) and subset == sorted(subset)
    reference, _ = train_test_split(base, train_size=limit, stratify=labels, random_state=seed)
    ours = np.bincount([raw.targets[i] for i in subset], minlength=len(LIMIT_SIZES))
    theirs = np.bincount([raw.targets[i] for i in reference], minlength=len(LIMIT_SIZES))
    share = np.bincount(labels, minlength=len(LIMIT_SIZES)) / len(labels)
    assert np.abs(ours - theirs).max() <= 1, (ours, theirs)
    assert np.abs(ours - limit * share).max() < 1, (ours, limit * share)
    assert (ours > 0).sum() >= 4  # the first `limit` images would be one or two classes
    again = registry.create("dataset", "image_folder", {**options, "limit": limit})
    assert again.split_indices("classification", split, raw) == subset  # the seed fixes the subset
    other = registry.create("dataset", "image_folder", {**options, "limit": limit, "seed": seed + 1})
    assert other.split_indices("classification", split, raw) != subset


def test_limit_is_a_seeded_random_subset_for_detection(registry, tmp_path: Path) -> None:
    root = _write_voc(tmp_path / "voc", [f"img{i}" for i in range(12)])  # 4 training, 8 test images
    subsets = []
    for seed in range(6):
        data = registry.create("dataset", "voc", {"root": str(root), "augment": False, "limit": 3, "seed": seed})
        raw = data.raw("detection", "val")
        subset = data.split_indices("detection", "test", raw)
        assert len(subset) == 3 and len(set(subset)) == 3 and set(subset) <= set(range(8))
        assert data.split_indices("detection", "test", raw) == subset
        assert data.data_report("detection", "test")["test_boxes"] == 3 * len(VOC_OBJECTS)
        subsets.append(subset)
    assert len({tuple(s) for s in subsets}) >= 4  # not the first three, not one draw for every seed


def test_limit_without_the_files_is_the_split_sizes_loading_gives(registry, tmp_path: Path) -> None:
    """`bench plan` on the release's nominal sizes: the holdout first, then at most `limit` per split."""
    missing = {"root": str(tmp_path / "absent")}
    data = registry.create("dataset", "imagenet", {**missing, "limit": 100})
    assert data.shape("classification") == ({"train": 100, "val": 100, "test": 100}, 1000)
    data = registry.create("dataset", "imagenet", {**missing, "limit": 100_000})
    assert data.shape("classification") == ({"train": 100_000, "val": 100_000, "test": 50_000}, 1000)
    root = _write_sorted_folders(tmp_path / "folders", LIMIT_SIZES)
    read = registry.create("dataset", "image_folder", {"root": str(root), "val_fraction": 0.25, "limit": 30})
    assert read.shape("classification") == ({"train": 30, "val": 25, "test": 30}, 5)


# --- options, metrics and the report --------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("anchor_sizes", [16, 0, 64, 128]), ("anchor_sizes", [16, 32, -64, 128]), ("aspect_ratios", [0.5, 0.0])],
)
def test_anchors_and_ratios_must_be_positive(registry, tmp_path: Path, option: str, value: list) -> None:
    suite = tiny_suite(tmp_path)
    suite["tasks"] = [t for t in suite["tasks"] if t["kind"] == "detection"]
    suite["tasks"][0]["options"] = {**TINY_DETECTION, option: value}
    with pytest.raises(SuiteError, match=rf"tasks\[0\]\.options\.{option}"):
        parse_suite(suite, "anchors.toml", registry)


def test_undefined_metric_is_left_out_of_the_mean_and_shown_as_missing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    keys = []
    for strategy, values in (("scratch", [0.2, 0.3, None]), ("full", [None, None])):
        for seed, value in enumerate(values):
            settings = {"task": {"kind": "detection", "metric": "map_small"}, "backbone": {"name": "r18"}}
            key = f"{strategy}-{seed}"
            store.save(
                CellResult(key, "ok", "det", "r18", strategy, seed, settings, metrics={"map_small": value, "map": 0.5})
            )
            keys.append(key)
    store.write_manifest({"settings": {"baseline": "scratch"}, "cells": keys})
    (table,) = build_report(tmp_path).tables
    rows = table.rows.set_index("strategy")
    assert rows.loc["scratch", "n"] == 2 and rows.loc["scratch", "mean"] == pytest.approx(0.25)
    assert rows.loc["full", "n"] == 0 and math.isnan(rows.loc["full", "mean"])
    _, lines = task_rows(table)
    assert lines[1][2] == "-"  # full: no seed has the metric


def test_a_metric_undefined_on_every_split_neither_breaks_training_nor_the_report(registry, tmp_path: Path) -> None:
    """32 px shapes have no large objects: map_large is None on val (model selection) and test."""
    suite = tiny_suite(tmp_path / "results", strategies=[{"name": "full"}])
    suite["tasks"] = [{**t, "metric": "map_large"} for t in suite["tasks"] if t["kind"] == "detection"]
    suite["training"] = {**suite["training"], "epochs": 2, "batch_size": 8}  # 16 images: 2 steps an epoch
    run_suite(parse_suite(suite, "undefined.toml", registry), registry)
    (path,) = (tmp_path / "results" / "cells").glob("*.json")
    document = json.loads(path.read_text())
    assert document["status"] == "ok", document["reason"]
    assert document["metrics"]["map_large"] is None and document["metrics"]["map"] is not None
    assert document["best"]["value"] is None and [e["val"]["map_large"] for e in document["curve"]] == [None, None]
    (table,) = build_report(tmp_path / "results").tables
    assert table.metric == "map_large" and task_rows(table)[1][0][2] == "-"

"""The real datasets, read from tiny trees the tests write in each dataset's own on-disk format.

Each test checks labels, boxes and masks through the augmentations (an object's box and mask
still cover its colour after random crops and flips), the validation holdout, the error when
files are missing, and runs one cell end to end.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from harness.driver import run_suite
from harness.errors import BenchError
from harness.store import load_results
from harness.suite import parse_suite
from harness.testing import TINY_DETECTION

COLOURS = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 230, 30)]
BACKGROUND = (128, 128, 128)


def _scene(size: int, objects: list[tuple[int, tuple[int, int, int, int]]]) -> tuple[Image.Image, np.ndarray]:
    """An image with filled rectangles (class colour) on grey, and the matching mask of class ids."""
    pixels = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    mask = np.zeros((size, size), dtype=np.uint8)
    for label, (x0, y0, x1, y1) in objects:
        pixels[y0:y1, x0:x1] = COLOURS[label]
        mask[y0:y1, x0:x1] = label + 1
    return Image.fromarray(pixels), mask


def _objects(index: int, size: int = 48) -> list[tuple[int, tuple[int, int, int, int]]]:
    a = index % 3
    return [(a, (4, 6, 22, 26)), ((a + 1) % 3, (28, 24, 44, 44))][: 1 + index % 2]


def _run_one_cell(tmp_path: Path, registry, kind: str, dataset: dict, **task) -> None:
    options = {"classification": {}, "detection": {**TINY_DETECTION, "min_size": 48, "max_size": 48}}
    suite = {
        "name": "real",
        "output": str(tmp_path / "results"),
        "device": "cpu",
        "training": {"epochs": 1, "max_steps": 2, "batch_size": 2, "optimizer": "adamw", "lr": 1e-3, "threads": 2},
        "tasks": [{"name": "t", "kind": kind, "dataset": dataset, "options": options.get(kind, {}), **task}],
        "backbones": [{"name": "resnet18"}],
        "strategies": [{"name": "full"}],
    }
    run_suite(parse_suite(suite, "real.toml", registry), registry)
    frame = load_results(tmp_path / "results")
    assert list(frame["status"]) == ["ok"], list(frame["reason"])


def _covers_colour(image: torch.Tensor, region: torch.Tensor, label: int) -> bool:
    """Most pixels of `region` (a bool mask) have the colour of class `label`."""
    colour = torch.tensor(COLOURS[label], dtype=torch.float32).view(3, 1) / 255
    pixels = image.reshape(3, -1)[:, region.reshape(-1)]
    return bool(((pixels - colour).abs().max(dim=0).values < 0.2).float().mean() > 0.8)


# --- CIFAR ---------------------------------------------------------------------------------


def _write_cifar(root: Path, classes: int = 10, per_batch: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        labels = [int(x) for x in rng.integers(0, classes, per_batch)]
        data = np.stack([np.tile(np.repeat(COLOURS[label % 4], 1024), 1) for label in labels]).astype(np.uint8)
        with (folder / name).open("wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(classes)]}, f)


@pytest.fixture
def cifar_root(tmp_path: Path, monkeypatch) -> Path:
    _write_cifar(tmp_path / "cifar")
    # the md5 sums of the real release cannot match files written here; everything else is torchvision's
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    return tmp_path / "cifar"


def test_cifar10_reads_pickled_batches_and_holds_out_validation(registry, cifar_root: Path, tmp_path: Path) -> None:
    data = registry.create("dataset", "cifar10", {"root": str(cifar_root), "val_fraction": 0.2})
    assert data.class_names("classification") == [f"class{i}" for i in range(10)]
    train, val, test = (data.load("classification", s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (24, 6, 6)
    image, label = test[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert _covers_colour(image, torch.ones(32, 32, dtype=torch.bool), label % 4)
    _run_one_cell(tmp_path, registry, "classification", {"name": "cifar10", "options": {"root": str(cifar_root)}})


def test_missing_files_name_the_path_and_layout(registry, tmp_path: Path) -> None:
    data = registry.create("dataset", "cifar10", {"root": str(tmp_path / "nowhere")})
    with pytest.raises(BenchError) as error:
        data.load("classification", "train")
    message = str(error.value)
    assert message.startswith(f"cifar10: cannot read {tmp_path / 'nowhere'}")
    assert "expected ROOT/cifar-10-batches-py/ with data_batch_1..5" in message and "download = true" in message


# --- ImageFolder and ImageNet --------------------------------------------------------------


def _write_folders(root: Path, split_names: tuple[str, str], classes: list[str], per_class: int = 4) -> None:
    for split in split_names:
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (40 + i, 36), COLOURS[label]).save(folder / f"{i}.png")


def test_image_folder(registry, tmp_path: Path) -> None:
    _write_folders(tmp_path / "hotdog", ("train", "test"), ["hotdog", "not-hotdog"])
    options = {"root": str(tmp_path / "hotdog"), "image_size": 32, "val_fraction": 0.25}
    data = registry.create("dataset", "image_folder", options)
    assert data.class_names("classification") == ["hotdog", "not-hotdog"]
    train = data.load("classification", "train")
    assert len(train) == 6 and len(data.load("classification", "val")) == 2
    for i in range(len(train)):  # random resized crops keep the class colour
        image, label = train[i]
        assert image.shape == (3, 32, 32) and _covers_colour(image, torch.ones(32, 32, dtype=torch.bool), label)
    _run_one_cell(tmp_path, registry, "classification", {"name": "image_folder", "options": options})


def test_imagenet_in_torchvisions_layout(registry, tmp_path: Path) -> None:
    root = tmp_path / "imagenet"
    wnids = ["n01440764", "n01443537"]
    _write_folders(root, ("train", "val"), wnids, per_class=2)
    torch.save(({"n01440764": ("tench", "Tinca tinca"), "n01443537": ("goldfish",)}, wnids), root / "meta.bin")
    data = registry.create("dataset", "imagenet", {"root": str(root), "image_size": 32})
    assert data.class_names("classification") == ["tench", "goldfish"]
    image, label = data.load("classification", "test")[3]
    assert label == 1 and _covers_colour(image, torch.ones(32, 32, dtype=torch.bool), 1)


# --- VOC -----------------------------------------------------------------------------------

VOC_NAMES = ["aeroplane", "bicycle", "bird"]


def _write_voc(root: Path, count: int = 6) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Main", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    names = [f"2012_{i:06d}" for i in range(count)]
    for i, name in enumerate(names):
        objects = _objects(i)
        image, mask = _scene(48, objects)
        image.save(voc / "JPEGImages" / f"{name}.jpg", quality=98)
        mask[0, :] = 255  # a void band, as VOC draws around objects
        png = Image.fromarray(mask, mode="P")  # VOC's masks are palette images: the index is the class
        png.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] * 64)
        png.save(voc / "SegmentationClass" / f"{name}.png")
        parts = []
        for k, (label, (x0, y0, x1, y1)) in enumerate(objects):
            difficult = int(i == 1 and k == 1)
            box = f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            parts.append(
                f"<object><name>{VOC_NAMES[label]}</name><difficult>{difficult}</difficult>"
                f"<bndbox>{box}</bndbox></object>"
            )
        size = "<size><width>48</width><height>48</height><depth>3</depth></size>"
        xml = f"<annotation><filename>{name}.jpg</filename>{size}{''.join(parts)}</annotation>"
        (voc / "Annotations" / f"{name}.xml").write_text(xml)
    for folder in ("Main", "Segmentation"):
        (voc / "ImageSets" / folder / "train.txt").write_text("\n".join(names[:4]) + "\n")
        (voc / "ImageSets" / folder / "val.txt").write_text("\n".join(names[4:]) + "\n")
    return root


def test_voc_detection_boxes_difficult_and_flips(registry, tmp_path: Path) -> None:
    root = _write_voc(tmp_path / "voc")
    plain = registry.create("dataset", "voc", {"root": str(root), "augment": False, "val_fraction": 0.25})
    assert plain.class_names("detection")[:3] == VOC_NAMES
    test = plain.load("detection", "test")
    assert len(test) == 2 and len(plain.load("detection", "train")) == 3
    _, target = plain.raw("detection", "train")[1]
    assert target["boxes"].tolist() == [
        [4.0, 6.0, 22.0, 26.0],
        [28.0, 24.0, 44.0, 44.0],
    ]  # 1-based corners made 0-based
    assert target["labels"].tolist() == [1, 2] and target["iscrowd"].tolist() == [0, 1]  # the difficult object
    flipped = registry.create("dataset", "voc", {"root": str(root), "val_fraction": 0.25})
    torch.manual_seed(0)
    for _ in range(4):
        for image, target in flipped.load("detection", "train"):
            for box, label in zip(target["boxes"], target["labels"], strict=True):
                x0, y0, x1, y1 = (round(v) for v in box.tolist())
                region = torch.zeros(image.shape[1:], dtype=torch.bool)
                region[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = True
                assert _covers_colour(image, region, int(label))
    _run_one_cell(tmp_path, registry, "detection", {"name": "voc", "options": {"root": str(root)}})


def test_voc_segmentation_masks_follow_the_image(registry, tmp_path: Path) -> None:
    root = _write_voc(tmp_path / "voc")
    data = registry.create("dataset", "voc", {"root": str(root), "image_size": 32})
    assert data.class_names("segmentation")[:2] == ["background", "aeroplane"]
    torch.manual_seed(0)
    for _ in range(3):
        for image, mask in data.load("segmentation", "train"):
            assert mask.shape == (32, 32) and mask.dtype == torch.int64
            assert set(mask.unique().tolist()) <= {0, 1, 2, 3, 255}
            for value in set(mask.unique().tolist()) - {0, 255}:
                assert _covers_colour(image, mask == value, value - 1)
    _run_one_cell(tmp_path, registry, "segmentation", {"name": "voc", "options": {"root": str(root), "image_size": 32}})


# --- COCO ----------------------------------------------------------------------------------


def _write_coco(root: Path) -> Path:
    categories = [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]
    ids = {0: 1, 1: 3, 2: 18}  # our label -> COCO category id (sorted ids: person, car, dog)
    for split, count in (("train", 5), ("val", 2)):
        (root / f"{split}2017").mkdir(parents=True)
        images, annotations = [], []
        for i in range(count):
            objects = _objects(i)
            _scene(48, objects)[0].save(root / f"{split}2017" / f"{i:012d}.jpg", quality=98)
            images.append({"id": 100 + i, "file_name": f"{i:012d}.jpg", "width": 48, "height": 48})
            for k, (label, (x0, y0, x1, y1)) in enumerate(objects):
                crowd = int(i == 1 and k == 1)
                annotations.append(
                    {
                        "id": 1000 * i + k,
                        "image_id": 100 + i,
                        "category_id": ids[label],
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "iscrowd": crowd,
                        "area": (x1 - x0) * (y1 - y0),
                    }
                )
        (root / "annotations").mkdir(exist_ok=True)
        document = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(document))
    return root


def test_coco_categories_boxes_and_crowd(registry, tmp_path: Path) -> None:
    root = _write_coco(tmp_path / "coco")
    data = registry.create("dataset", "coco", {"root": str(root), "augment": False})
    assert data.class_names("detection") == ["person", "car", "dog"]
    _, target = data.load("detection", "test")[1]
    assert target["boxes"].tolist() == [[4.0, 6.0, 22.0, 26.0], [28.0, 24.0, 44.0, 44.0]]
    assert target["labels"].tolist() == [1, 2] and target["iscrowd"].tolist() == [0, 1]
    _run_one_cell(tmp_path, registry, "detection", {"name": "coco", "options": {"root": str(root)}})


def test_crowd_boxes_are_not_trained_on(registry) -> None:
    task = registry.create("task", "detection", TINY_DETECTION)
    seen = []

    class Model(torch.nn.Module):
        def forward(self, images, targets, with_features=False):
            seen.extend(targets)
            return {"loss": torch.zeros(())}, {}

    target = {
        "boxes": torch.tensor([[0.0, 0, 4, 4], [1.0, 1, 5, 5]]),
        "labels": torch.tensor([0, 1]),
        "iscrowd": torch.tensor([0, 1]),
    }
    task.loss(Model(), task.collate([(torch.zeros(3, 8, 8), target)]))
    assert seen[0]["boxes"].tolist() == [[0.0, 0.0, 4.0, 4.0]] and seen[0]["labels"].tolist() == [1]


# --- Cityscapes and ADE20K -----------------------------------------------------------------


def test_cityscapes_label_ids_become_train_ids(registry, tmp_path: Path) -> None:
    root = tmp_path / "cityscapes"
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            image, mask = _scene(48, _objects(i))
            label_ids = np.array([0, 7, 26, 24], dtype=np.uint8)[mask]  # unlabeled, road, car, person
            label_ids[0, 0] = 5  # "dynamic": void, ignored
            for folder, suffix, picture in (
                ("leftImg8bit", "leftImg8bit", image),
                ("gtFine", "gtFine_labelIds", Image.fromarray(label_ids)),
            ):
                path = root / folder / split / "aachen" / f"aachen_{i:06d}_000019_{suffix}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                picture.save(path)
    data = registry.create("dataset", "cityscapes", {"root": str(root), "image_size": 48, "augment": False})
    classes = data.class_names("segmentation")
    assert len(classes) == 19 and classes[0] == "road" and classes[13] == "car"
    _, mask = data.load("segmentation", "test")[0]
    assert mask[0, 0] == 255 and mask[10, 10] == 0 and mask[1, 1] == 255  # void, road, unlabeled
    _, mask = data.load("segmentation", "test")[1]
    assert mask[10, 10] == 13 and mask[30, 30] == 11  # car, person
    _run_one_cell(
        tmp_path, registry, "segmentation", {"name": "cityscapes", "options": {"root": str(root), "image_size": 32}}
    )


def test_ade20k_release_layout(registry, tmp_path: Path) -> None:
    root = tmp_path / "ade"
    for split, count in (("training", 4), ("validation", 2)):
        for i in range(count):
            image, mask = _scene(48, _objects(i))
            for folder, picture, suffix in (
                ("images", image, "jpg"),
                ("annotations", Image.fromarray(mask * 7), "png"),
            ):
                path = root / "ADEChallengeData2016" / folder / split / f"ADE_{split}_{i:08d}.{suffix}"
                path.parent.mkdir(parents=True, exist_ok=True)
                picture.save(path, **({"quality": 98} if suffix == "jpg" else {}))
    data = registry.create("dataset", "ade20k", {"root": str(root), "image_size": 48, "augment": False})
    assert len(data.class_names("segmentation")) == 150
    _, mask = data.load("segmentation", "test")[1]
    assert mask[2, 2] == 255 and mask[10, 10] == 13 and mask[30, 30] == 20  # other -> ignored; 14 -> 13; 21 -> 20
    _run_one_cell(
        tmp_path, registry, "segmentation", {"name": "ade20k", "options": {"root": str(root), "image_size": 32}}
    )

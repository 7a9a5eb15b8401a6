"""Task metrics equal the reference implementations on the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert


class Replay(torch.nn.Module):
    """A stand-in model that returns prepared predictions, one batch per call."""

    def __init__(self, outputs: list) -> None:
        super().__init__()
        self.outputs = list(outputs)

    def forward(self, *args):
        return self.outputs.pop(0)


def _random_detection_case(rng: np.random.Generator, images: int, classes: int, largest: float = 40):
    targets, predictions = [], []
    for _ in range(images):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 80, size=(n, 2))
        wh = rng.uniform(8, largest, size=(n, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(1, classes + 1, size=n)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
        # predictions: jittered true boxes (some with wrong labels) plus false positives
        m = int(rng.integers(0, 6))
        jitter = boxes + rng.normal(0, 4, size=boxes.shape)
        fp_xy = rng.uniform(0, 80, size=(m, 2))
        fp = np.concatenate([fp_xy, fp_xy + rng.uniform(8, 40, size=(m, 2))], axis=1)
        pred_boxes = np.concatenate([jitter, fp])
        pred_labels = np.concatenate(
            [np.where(rng.random(n) < 0.8, labels, rng.integers(1, classes + 1, n)), rng.integers(1, classes + 1, m)]
        )
        predictions.append(
            {
                "boxes": torch.tensor(pred_boxes, dtype=torch.float32),
                "scores": torch.tensor(rng.random(n + m), dtype=torch.float32),
                "labels": torch.tensor(pred_labels),
            }
        )
    return targets, predictions


def _xywh(boxes: torch.Tensor) -> list[list[float]]:
    """COCO boxes from xyxy, converted in float32 as any torch pipeline does (IoUs on a threshold depend on it)."""
    return box_convert(boxes, "xyxy", "xywh").tolist()


#: COCOeval's `stats` index of each metric the detection task reports
COCO_STATS = {"map": 0, "map_50": 1, "map_75": 2, "map_small": 3, "map_medium": 4, "map_large": 5, "mar_100": 8}


def _cocoeval(targets, predictions, classes: int) -> np.ndarray:
    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(1, classes + 1)]}
    dets = []
    for image_id, (t, p) in enumerate(zip(targets, predictions, strict=True)):
        gt["images"].append({"id": image_id, "width": 128, "height": 128})
        for box, label in zip(_xywh(t["boxes"]), t["labels"].tolist(), strict=True):
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
        for box, score, label in zip(_xywh(p["boxes"]), p["scores"].tolist(), p["labels"].tolist(), strict=True):
            dets.append({"image_id": image_id, "category_id": label, "score": score, "bbox": box})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=float)


def _evaluate(registry, targets, predictions, classes: int = 3, **options) -> dict:
    task = registry.create("task", "detection", options)
    batches = [(None, targets[i : i + 4]) for i in range(0, len(targets), 4)]
    model = Replay([predictions[i : i + 4] for i in range(0, len(targets), 4)])
    return task.evaluate(model, iter(batches), num_classes=classes)


@pytest.mark.parametrize("largest", [40, 110])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_detection_map_equals_pycocotools(registry, seed: int, largest: float) -> None:
    """Every COCO metric the task reports (by size and AR@100 too) is pycocotools' to float precision;
    with boxes up to 40 px no object is large (96² px), and the task says None where COCOeval says -1."""
    rng = np.random.default_rng(seed)
    targets, predictions = _random_detection_case(rng, images=12, classes=3, largest=largest)
    found = _evaluate(registry, targets, predictions)
    reference = _cocoeval(targets, predictions, classes=3)
    assert 0.05 < reference[0] < 0.95  # a case that can tell implementations apart
    for name, index in COCO_STATS.items():
        if reference[index] == -1:
            assert found[name] is None, name
        else:
            assert found[name] == pytest.approx(reference[index], abs=3e-8), name
    assert (found["map_large"] is None) == (largest == 40)


def test_detection_metrics_are_none_without_ground_truth(registry) -> None:
    """COCOeval's -1 (undefined) is None, never a number that a mean over seeds would take in."""
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    prediction = {"boxes": torch.tensor([[1.0, 1, 20, 20]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    found = _evaluate(registry, [empty, empty], [prediction, prediction])
    assert set(found) == set(COCO_STATS) and all(v is None for v in found.values())
    found = _evaluate(registry, [empty], [prediction], metric_protocol="voc07")
    assert found["map_voc07"] is None


def test_zero_area_ground_truth_counts_as_a_miss_as_in_pycocotools(registry) -> None:
    """A ground-truth box without area (kept on the test split) is a miss, as COCOeval counts it."""
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 30, 30], [40, 40, 40, 60]]), "labels": torch.tensor([1, 1])},
        {"boxes": torch.tensor([[5.0, 5, 25, 45]]), "labels": torch.tensor([2])},
    ]
    predictions = [
        {"boxes": torch.tensor([[11.0, 10, 30, 31]]), "scores": torch.tensor([0.8]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[5.0, 5, 25, 45]]), "scores": torch.tensor([0.7]), "labels": torch.tensor([2])},
    ]
    found = _evaluate(registry, targets, predictions, classes=2)
    reference = _cocoeval(targets, predictions, classes=2)
    for name, index in COCO_STATS.items():
        expected = None if reference[index] == -1 else pytest.approx(reference[index], abs=3e-8)
        assert found[name] == expected, name
    # class 1 finds one of its two boxes, at IoU 380/419 = 0.907: at 9 of the 10 thresholds, so recall 0.45;
    # class 2 finds its box exactly: 1
    assert found["mar_100"] == pytest.approx((0.45 + 1.0) / 2)


# --- COCO's `area`: objects sized as COCOeval sizes them ---------------------------------------


def _write_coco_tree(root: Path, boxes: list[list[list[int]]], labels: list[list[int]], areas: list[list[float]]):
    """A COCO val2017 tree: image i holds `boxes[i]` (xywh, integers) of categories `labels[i]` (1..3)
    with mask-style `areas[i]` (not the boxes' own); the JSON is COCOeval's ground truth as well."""
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    document: dict = {"images": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    for i, (image_boxes, image_labels, image_areas) in enumerate(zip(boxes, labels, areas, strict=True)):
        Image.new("RGB", (128, 128)).save(root / "val2017" / f"{i}.png")
        document["images"].append({"id": i, "file_name": f"{i}.png", "width": 128, "height": 128})
        for box, label, area in zip(image_boxes, image_labels, image_areas, strict=True):
            document["annotations"].append(
                {"id": len(document["annotations"]) + 1, "image_id": i, "category_id": label, "bbox": box,
                 "area": area, "iscrowd": 0}
            )  # fmt: skip
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps({**document, "annotations": []}))
    return root / "annotations" / "instances_val2017.json"


def _coco_file_eval(truth: Path, predictions: list[dict]) -> np.ndarray:
    """pycocotools' COCOeval on the JSON file itself (its `area`s) and `predictions` (xyxy, labels = ids)."""
    coco = COCO(str(truth))
    dets = [
        {"image_id": i, "category_id": label, "score": score, "bbox": box}
        for i, p in enumerate(predictions)
        for box, score, label in zip(_xywh(p["boxes"]), p["scores"].tolist(), p["labels"].tolist(), strict=True)
    ]
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return np.asarray(evaluator.stats, dtype=float)


def _through_the_coco_dataset(registry, root: Path, predictions: list[dict]) -> dict:
    """The harness's numbers: targets read by the `coco` dataset and batched by the detection task."""
    data = registry.create("dataset", "coco", {"root": str(root)}).load("detection", "test")
    task = registry.create("task", "detection", {})
    batches = [task.collate([data[k] for k in range(i, min(i + 4, len(data)))]) for i in range(0, len(data), 4)]
    model = Replay([predictions[i : i + 4] for i in range(0, len(predictions), 4)])
    return task.evaluate(model, iter(batches), num_classes=3)


def test_a_box_sized_medium_with_a_small_mask_area_is_small_as_in_cocoeval(registry, tmp_path: Path) -> None:
    """A 40x40 box (1600 px², medium by its box) whose annotation's area is 900 (a mask's): small."""
    truth = _write_coco_tree(tmp_path / "coco", [[[10, 10, 40, 40]]], [[1]], [[900.0]])
    prediction = {
        "boxes": torch.tensor([[10.0, 10, 50, 50]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([1]),
    }
    found = _through_the_coco_dataset(registry, truth.parent.parent, [prediction])
    reference = _coco_file_eval(truth, [prediction])
    assert reference[COCO_STATS["map_small"]] == pytest.approx(1.0) and reference[COCO_STATS["map_medium"]] == -1
    assert found["map_small"] == pytest.approx(1.0) and found["map_medium"] is None and found["map_large"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_areas_size_objects_as_pycocotools_does(registry, tmp_path: Path, seed: int) -> None:
    """Random scenes with areas 30-100% of each box (as instance masks are): every reported metric,
    by size too, equals COCOeval's on the same JSON, and differs from sizing objects by their boxes."""
    rng = np.random.default_rng(seed)
    targets, predictions = _random_detection_case(rng, images=10, classes=3, largest=110)
    boxes, labels, areas = [], [], []
    for t, p in zip(targets, predictions, strict=True):
        t["boxes"] = t["boxes"].round().clamp(0, 127)  # integers: exact in float32 and in the JSON
        t["boxes"][:, 2:] = torch.maximum(t["boxes"][:, 2:], t["boxes"][:, :2] + 2)
        p["boxes"] = p["boxes"].round().clamp(0, 128)
        xywh = [[int(v) for v in box] for box in _xywh(t["boxes"])]
        boxes.append(xywh)
        labels.append(t["labels"].tolist())
        areas.append([round(w * h * rng.uniform(0.3, 1.0), 1) for _, _, w, h in xywh])
    truth = _write_coco_tree(tmp_path / "coco", boxes, labels, areas)
    found = _through_the_coco_dataset(registry, truth.parent.parent, predictions)
    reference = _coco_file_eval(truth, predictions)
    assert 0.05 < reference[0] < 0.95
    for name, index in COCO_STATS.items():
        if reference[index] == -1:
            assert found[name] is None, name
        else:
            assert found[name] == pytest.approx(reference[index], abs=3e-8), name
    by_box = _cocoeval(targets, predictions, classes=3)  # the same scenes, each object sized by its box
    assert any(by_box[COCO_STATS[n]] != reference[COCO_STATS[n]] for n in ("map_small", "map_medium", "map_large"))


# --- the PASCAL VOC devkit's AP (metric_protocol voc07 / voc12) ---------------------------------


def _ours(*corners: float) -> list[float]:
    """The devkit's 1-based inclusive corners (the XML's) as this project's 0-based xyxy, as VOC's reader converts."""
    x1, y1, x2, y2 = corners
    return [x1 - 1, y1 - 1, x2, y2]


def _voc_case():
    """One class, two images; boxes in the devkit's (XML) coordinates, areas with its +1 convention.

    Image A: G1 (1,1,10,10) = 100 px; D1 (21,1,40,20) = 400 px, difficult.
    Image B: G2 (1,1,20,20) = 400 px; G3 (31,31,40,40) = 100 px. Positives: G1, G2, G3 = 3.
    Detections, by score:
      d1 0.9 A (1,1,10,10): G1 at IoU 1 -> TP
      d2 0.8 A (2,1,10,10): G1 at IoU 90/100 = 0.9, already matched -> FP (duplicate)
      d3 0.7 A (25,5,29,9), 25 px inside D1: IoU 25/400 = 0.0625 < 0.5 -> FP (the devkit's rule;
         COCOeval's crowd rule would ignore it: all of it lies inside the ignore region)
      d4 0.6 B (1,1,20,19): G2 at IoU 380/400 = 0.95 -> TP
      d5 0.5 A (21,1,40,19): D1 at IoU 380/400 = 0.95, difficult -> neither TP nor FP
      d6 0.4 B (31,31,40,39): G3 at IoU 90/100 = 0.9 -> TP
    Cumulative (tp, fp) -> (recall, precision): (1,0) 1/3, 1 | (1,1) 1/3, 1/2 | (1,2) 1/3, 1/3 |
      (2,2) 2/3, 1/2 | (2,2) 2/3, 1/2 | (3,2) 1, 3/5
    VOC07, 11 points: t = 0, .1, .2, .3 -> 1; t = .4 .. 1.0 (7 points) -> 3/5: (4 + 7 * 0.6) / 11 = 8.2 / 11
    VOC12: precision envelope 1 up to recall 1/3, then 3/5 up to 1: 1/3 * 1 + 2/3 * 3/5 = 1/3 + 0.4
    """
    truths = [
        (np.array([_ours(1, 1, 10, 10), _ours(21, 1, 40, 20)]), np.array([False, True])),
        (np.array([_ours(1, 1, 20, 20), _ours(31, 31, 40, 40)]), np.array([False, False])),
    ]
    a = [
        (0.9, _ours(1, 1, 10, 10)),
        (0.8, _ours(2, 1, 10, 10)),
        (0.7, _ours(25, 5, 29, 9)),
        (0.5, _ours(21, 1, 40, 19)),
    ]
    b = [(0.6, _ours(1, 1, 20, 19)), (0.4, _ours(31, 31, 40, 39))]
    detections = [(np.array([box for _, box in d]), np.array([s for s, _ in d])) for d in (a, b)]
    return detections, truths


def test_voc_devkit_average_precision_by_hand() -> None:
    from bench_plugins.tasks.detection import voc_average_precision

    detections, truths = _voc_case()
    assert voc_average_precision(detections, truths, use_07_metric=True) == pytest.approx(8.2 / 11, abs=1e-12)
    assert voc_average_precision(detections, truths, use_07_metric=False) == pytest.approx(1 / 3 + 0.4, abs=1e-12)


def test_voc_devkit_pixel_convention() -> None:
    """The devkit counts pixels: (x2 - x1 + 1) * (y2 - y1 + 1) on its 1-based inclusive corners.

    G (1,1,2,2) = 4 px and d (1,1,2,1) = 2 px: IoU 2/4 = 0.5 -> TP (AP 1); without the +1, d has no area.
    G (1,1,3,3) = 9 px and d (1,1,3,1) = 3 px: IoU 1/3 -> FP (AP 0); the +1 added to 0-based
    corners instead would give 8/16 = 0.5, a TP.
    """
    from bench_plugins.tasks.detection import voc_average_precision

    def ap(gt: list[float], det: list[float]) -> float:
        truths = [(np.array([gt]), np.array([False]))]
        return voc_average_precision([(np.array([det]), np.array([0.9]))], truths, use_07_metric=False)

    assert ap(_ours(1, 1, 2, 2), _ours(1, 1, 2, 1)) == pytest.approx(1.0)
    assert ap(_ours(1, 1, 3, 3), _ours(1, 1, 3, 1)) == pytest.approx(0.0)


def test_voc_protocol_through_the_task(registry) -> None:
    """Class 1 is the hand-built case; class 2 has only a difficult box, so no AP, and is left out of the mean."""
    detections, truths = _voc_case()
    targets, predictions = [], []
    for (det_boxes, scores), (gt_boxes, difficult) in zip(detections, truths, strict=True):
        targets.append(
            {
                "boxes": torch.tensor(np.concatenate([gt_boxes, [[50, 50, 60, 60]]]), dtype=torch.float32),
                "labels": torch.tensor([1] * len(gt_boxes) + [2]),
                "iscrowd": torch.tensor([*difficult.astype(int), 1]),
            }
        )
        predictions.append(
            {
                "boxes": torch.tensor(np.concatenate([det_boxes, [[50, 50, 60, 60]]]), dtype=torch.float32),
                "scores": torch.tensor([*scores, 0.3], dtype=torch.float32),
                "labels": torch.tensor([1] * len(det_boxes) + [2]),
            }
        )
    voc07 = _evaluate(registry, targets, predictions, classes=2, metric_protocol="voc07")
    voc12 = _evaluate(registry, targets, predictions, classes=2, metric_protocol="voc12")
    assert voc07["map_voc07"] == pytest.approx(8.2 / 11, abs=1e-6) and "map_voc12" not in voc07
    assert voc12["map_voc12"] == pytest.approx(1 / 3 + 0.4, abs=1e-6)
    assert voc07["map"] == voc12["map"] and "map_voc07" not in _evaluate(registry, targets, predictions, classes=2)


def test_segmentation_miou_ignores_void_and_absent_classes(registry) -> None:
    rng = np.random.default_rng(0)
    classes = 4
    target = rng.integers(0, 3, size=(3, 16, 16))  # class 3 never appears in the target ...
    target[:, :2, :] = 255  # ... and the top rows are void
    predicted = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 3, size=target.shape))
    predicted[predicted == 255] = 0
    logits = torch.nn.functional.one_hot(torch.tensor(predicted), classes).permute(0, 3, 1, 2).float()
    task = registry.create("task", "segmentation")
    found = task.evaluate(Replay([logits]), iter([(None, torch.tensor(target))]), num_classes=classes)

    valid = target != 255
    ious = []
    for c in range(classes):
        inter = np.sum((predicted == c) & (target == c) & valid)
        union = np.sum(((predicted == c) | (target == c)) & valid)
        if union:
            ious.append(inter / union)
    assert found["miou"] == pytest.approx(np.mean(ious), abs=1e-6)
    assert found["pixel_acc"] == pytest.approx(np.mean(predicted[valid] == target[valid]), abs=1e-6)


def test_classification_top_k(registry) -> None:
    logits = torch.tensor(
        [[0.1, 0.9, 0.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0, 0.0, 0.0], [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]]
    )
    labels = torch.tensor([1, 1, 0])
    task = registry.create("task", "classification")
    found = task.evaluate(Replay([logits]), iter([(None, labels)]), num_classes=6)
    assert {k: found[k] for k in ("top1", "top5")} == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}

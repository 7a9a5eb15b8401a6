"""Task metrics equal the reference implementations on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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


def _random_detection_case(rng: np.random.Generator, images: int, classes: int):
    targets, predictions = [], []
    for _ in range(images):
        n = int(rng.integers(1, 5))
        xy = rng.uniform(0, 80, size=(n, 2))
        wh = rng.uniform(8, 40, size=(n, 2))
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


def _cocoeval(targets, predictions, classes: int) -> tuple[float, float]:
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
    return float(evaluator.stats[0]), float(evaluator.stats[1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_detection_map_equals_pycocotools(registry, seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets, predictions = _random_detection_case(rng, images=12, classes=3)
    task = registry.create("task", "detection")
    batches = [(None, targets[i : i + 4]) for i in range(0, 12, 4)]
    model = Replay([predictions[i : i + 4] for i in range(0, 12, 4)])
    found = task.evaluate(model, iter(batches), num_classes=3)
    reference_map, reference_map50 = _cocoeval(targets, predictions, classes=3)
    assert 0.05 < reference_map < 0.95  # a case that can tell implementations apart
    assert found["map"] == pytest.approx(reference_map, abs=1e-6)
    assert found["map_50"] == pytest.approx(reference_map50, abs=1e-6)


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
    assert found == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3)}

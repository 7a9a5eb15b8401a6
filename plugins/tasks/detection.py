"""Object detection: torchvision's Faster R-CNN with an FPN over the backbone's last stages.

The pieces are torchvision's own (FeaturePyramidNetwork, AnchorGenerator, RegionProposalNetwork
and RoIHeads as FasterRCNN assembles them); only the wiring is ours, so that the backbone stays
the shared `BackboneModule` and everything else is the task's new `head`. BatchNorm in the
backbone is ordinary BatchNorm (torchvision's `resnet_fpn_backbone` would freeze it, which is
wrong when training from scratch); the strategy decides. COCO mAP comes from torchmetrics with
the faster-coco-eval backend: mAP (IoU .50:.95), mAP@50, mAP@75, mAP of small / medium / large
objects and mean recall at 100 detections, COCOeval's numbers exactly. A metric that is not
defined (no ground truth at all, or none of that size) is None, not COCOeval's -1. Crowd regions
(COCO's crowds, VOC's `difficult` objects) are COCOeval's ignore regions. `metric_protocol =
"voc07"` or `"voc12"` adds the PASCAL VOC devkit's AP at IoU 0.5 (`map_voc07`, `map_voc12`;
see `voc_average_precision`), where a detection on a difficult object is ignored only when
that object is its best match at IoU >= 0.5.

The RPN/RoI sample counts are options: torchvision's defaults (2000 proposals, 512 sampled
RoIs per image) are right for COCO-sized images, but make small-image CPU runs several times
slower than e.g. 256 proposals and 64 sampled RoIs.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import numpy as np
import torch
from bench_plugins.tasks.distillation import feature_mse
from pydantic import Field, model_validator
from torch import nn
from torchmetrics.detection import MeanAveragePrecision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from harness import BackboneModule, Options, Task, TaskModel, hookimpl


class DetectionOptions(Options):
    #: how many of the backbone's last stages feed the FPN (a max-pooled level is added on top)
    fpn_stages: Annotated[int, Field(ge=1, le=5)] = 3
    fpn_channels: Annotated[int, Field(ge=8, le=1024)] = 256
    representation_size: Annotated[int, Field(ge=16, le=4096)] = 1024
    #: anchor size per FPN level (fpn_stages + 1 values, each > 0); default 8 x the level's stride
    anchor_sizes: list[Annotated[int, Field(gt=0)]] | None = None
    #: anchor height / width ratios, each > 0
    aspect_ratios: Annotated[list[Annotated[float, Field(gt=0)]], Field(min_length=1)] = [0.5, 1.0, 2.0]
    #: images are resized so the short side is min_size (long side at most max_size)
    min_size: Annotated[int, Field(ge=16)] = 800
    max_size: Annotated[int, Field(ge=16)] = 1333
    proposals_train: Annotated[int, Field(ge=1)] = 2000
    proposals_test: Annotated[int, Field(ge=1)] = 1000
    rpn_sampled: Annotated[int, Field(ge=1)] = 256
    roi_sampled: Annotated[int, Field(ge=1)] = 512
    detections_per_image: Annotated[int, Field(ge=1)] = 100
    #: "coco": COCOeval's metrics; "voc07" / "voc12": also the PASCAL VOC devkit's AP at IoU 0.5
    #: (`map_voc07`: 11-point interpolation; `map_voc12`: area under the precision envelope)
    metric_protocol: Literal["coco", "voc07", "voc12"] = "coco"

    @model_validator(mode="after")
    def _anchors(self) -> DetectionOptions:
        if self.anchor_sizes is not None and len(self.anchor_sizes) != self.fpn_stages + 1:
            raise ValueError(f"anchor_sizes needs fpn_stages + 1 = {self.fpn_stages + 1} values")
        if self.max_size < self.min_size:
            raise ValueError("max_size must be >= min_size")
        return self


class _Channels(nn.Module):
    """Stands in for the backbone while FasterRCNN assembles its parts (it reads `out_channels`)."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels


class DetectionModel(TaskModel):
    head: nn.ModuleDict

    def __init__(self, backbone: BackboneModule, num_classes: int, options: DetectionOptions) -> None:
        super().__init__()
        k = options.fpn_stages
        self.backbone = backbone
        self.levels = [str(i) for i in range(k)]
        strides = [*backbone.strides[-k:], backbone.strides[-1] * 2]
        sizes = options.anchor_sizes or [8 * s for s in strides]
        channels = options.fpn_channels
        parts = FasterRCNN(
            _Channels(channels),
            num_classes=None,
            min_size=options.min_size,
            max_size=options.max_size,
            image_mean=list(backbone.mean),
            image_std=list(backbone.std),
            rpn_anchor_generator=AnchorGenerator(
                sizes=tuple((s,) for s in sizes), aspect_ratios=(tuple(options.aspect_ratios),) * (k + 1)
            ),
            rpn_pre_nms_top_n_train=options.proposals_train,
            rpn_post_nms_top_n_train=options.proposals_train,
            rpn_pre_nms_top_n_test=options.proposals_test,
            rpn_post_nms_top_n_test=options.proposals_test,
            rpn_batch_size_per_image=options.rpn_sampled,
            box_roi_pool=MultiScaleRoIAlign(featmap_names=self.levels, output_size=7, sampling_ratio=2),
            box_head=TwoMLPHead(channels * 7 * 7, options.representation_size),
            box_predictor=FastRCNNPredictor(options.representation_size, num_classes + 1),
            box_batch_size_per_image=options.roi_sampled,
            box_detections_per_img=options.detections_per_image,
        )
        self.transform = parts.transform
        self.head = nn.ModuleDict(
            {
                "fpn": FeaturePyramidNetwork(list(backbone.channels[-k:]), channels, extra_blocks=LastLevelMaxPool()),
                "rpn": parts.rpn,
                "roi_heads": parts.roi_heads,
            }
        )

    def forward(
        self,
        images: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
        *,
        with_features: bool = False,
    ) -> Any:
        """Training: the dict of losses. Evaluation: one dict of boxes, scores, labels per image.
        `with_features`: also the FPN's feature maps, as (that, features)."""
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        batch, targets = self.transform(images, targets)
        features = self._pyramid(batch.tensors)
        proposals, rpn_losses = self.head["rpn"](batch, features, targets)
        detections, roi_losses = self.head["roi_heads"](features, proposals, batch.image_sizes, targets)
        if self.training:
            out = {**rpn_losses, **roi_losses}
        else:
            out = self.transform.postprocess(detections, batch.image_sizes, original_sizes)
        return (out, features) if with_features else out

    def features(self, images: list[torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
        """The FPN's feature maps of `images` (resized and normalised as `forward` does), nothing after."""
        return self._pyramid(self.transform(images)[0].tensors)

    def _pyramid(self, tensors: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stages = self.backbone(tensors)[-len(self.levels) :]
        return self.head["fpn"](OrderedDict(zip(self.levels, stages, strict=True)))


Targets = list[dict[str, torch.Tensor]]

# COCOeval's own float64 thresholds. torchmetrics' defaults come from a float32 linspace (0.3 is
# 0.30000001 there), which moves a recall of exactly 3/10 across a threshold and the mAP off
# the reference's.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()


#: what `Detection.evaluate` reads from torchmetrics' MeanAveragePrecision (COCOeval's stats)
COCO_METRICS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")


class Detection(Task):
    """Object detection: Faster R-CNN with an FPN over the last stages; COCO mAP, mAP@50, mAP@75, by size, AR@100."""

    name = "detection"
    #: map_voc07 / map_voc12 only with `metric_protocol` "voc07" / "voc12"
    metrics = (*COCO_METRICS, "map_voc07", "map_voc12")
    Options = DetectionOptions
    options: DetectionOptions
    dense = True
    trivial_predictor = "no detections"
    # float16 with a gradient scaler, as torchvision's references train detection; batches are lists
    preferred_amp = "fp16"
    channels_last = False

    distilled = "FPN features"

    def distillation_loss(self, outputs: Any, teacher: TaskModel, batch: Any, temperature: float) -> torch.Tensor:
        """Feature matching: Faster R-CNN's outputs are boxes, not distributions to soften."""
        with torch.no_grad():
            target = teacher.features(batch[0])  # type: ignore[operator]
        return feature_mse(outputs["features"], target)

    def synthetic_samples(self, size: int, num_classes: int, count: int) -> list[Any]:
        """Random VOC-like 4:3 images at the model's `min_size` (Faster R-CNN resizes to it), one box each."""
        height = self.options.min_size
        width = min(self.options.max_size, height * 4 // 3)
        boxes = torch.tensor([[0.1 * width, 0.1 * height, 0.6 * width, 0.7 * height]])
        return [(torch.rand(3, height, width), {"boxes": boxes, "labels": torch.tensor([0])}) for _ in range(count)]

    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel:
        return DetectionModel(backbone, num_classes, self.options)

    def collate(self, samples: list[Any]) -> tuple[list[torch.Tensor], Targets]:
        """Labels move from 0..C-1 to 1..C: Faster R-CNN keeps 0 for the background.

        `iscrowd` (COCO's crowd regions, VOC's difficult objects) defaults to 0 for every box. An
        `area` per box (COCO's annotations: the mask's area) goes on to the metric, which sizes
        objects by it for `map_small` / `medium` / `large` as COCOeval does; without one, by the box.
        """
        images = [image for image, _ in samples]
        targets = [
            {
                "boxes": t["boxes"],
                "labels": t["labels"] + 1,
                "iscrowd": t.get("iscrowd", torch.zeros(len(t["labels"]), dtype=torch.int64)),
                **({"area": t["area"]} if "area" in t else {}),
            }
            for _, t in samples
        ]
        return images, targets

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets = batch
        return (
            [image.to(device, non_blocking=True) for image in images],
            [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets],
        )

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def loss(self, model: TaskModel, batch: Any) -> torch.Tensor:
        return self.loss_and_outputs(model, batch)[0]

    def loss_and_outputs(self, model: TaskModel, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """The summed Faster R-CNN losses, and `{"losses": each of them, "features": the FPN maps}`.

        Crowd / difficult boxes are not trained on (they only excuse detections in evaluation).
        """
        images, targets = batch
        kept = [t["iscrowd"] == 0 for t in targets]
        targets = [{"boxes": t["boxes"][k], "labels": t["labels"][k]} for t, k in zip(targets, kept, strict=True)]
        losses, features = model(images, targets, with_features=True)
        return torch.stack(list(losses.values())).sum(), {"losses": losses, "features": features}

    def feature_cache_problem(self) -> str | None:
        return (
            "Faster R-CNN resizes each image inside the model and its FPN (a new part) reads several stages, "
            "so the cache would hold every stage's maps per image; not implemented"
        )

    def reported_metrics(self, num_classes: int | None = None) -> tuple[str, ...]:
        """The devkit's AP only under its `metric_protocol`."""
        protocol = self.options.metric_protocol
        return (*COCO_METRICS, f"map_{protocol}") if protocol != "coco" else COCO_METRICS

    def trivial(self, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        """No detections on any image: 0 wherever ground truth makes a metric defined."""
        targets = [[{k: v.cpu() for k, v in t.items()} for t in batch_targets] for _, batch_targets in batches]

        def nothing(images: list[Any]) -> list[dict[str, torch.Tensor]]:
            empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
            return [dict(empty) for _ in images]

        blanks = (([None] * len(t), t) for t in targets)  # the images are never looked at
        return self.evaluate(nothing, blanks, num_classes)  # type: ignore[arg-type]

    def evaluate(self, model: TaskModel, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        meter = MeanAveragePrecision(
            iou_type="bbox",
            backend="faster_coco_eval",
            iou_thresholds=COCO_IOU_THRESHOLDS,
            rec_thresholds=COCO_RECALL_THRESHOLDS,
        )
        protocol = self.options.metric_protocol
        kept: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []
        for images, targets in batches:
            predictions = [
                {k: v.float().cpu() if k != "labels" else v.cpu() for k, v in p.items()} for p in model(images)
            ]
            targets = [{k: v.cpu() for k, v in t.items()} for t in targets]
            meter.update(predictions, targets)
            if protocol != "coco":
                kept.extend(
                    ({k: v.numpy() for k, v in p.items()}, {k: v.numpy() for k, v in t.items()})
                    for p, t in zip(predictions, targets, strict=True)
                )
        found = meter.compute()
        # COCOeval's -1 means undefined (no ground truth, or none of that size): None, not a number
        metrics: dict[str, float | None] = {
            name: value if (value := float(found[name])) >= 0 else None for name in COCO_METRICS
        }
        if protocol != "coco":
            metrics[f"map_{protocol}"] = voc_mean_average_precision(
                [p for p, _ in kept], [t for _, t in kept], use_07_metric=protocol == "voc07"
            )
        return metrics


def voc_mean_average_precision(
    predictions: list[dict[str, np.ndarray]], targets: list[dict[str, np.ndarray]], use_07_metric: bool
) -> float | None:
    """The PASCAL VOC devkit's mAP: the mean over classes with ground truth of `voc_average_precision`.

    Classes without any non-difficult ground truth have no AP and are left out (None if none has).
    `iscrowd` marks the devkit's `difficult` objects.
    """
    classes = sorted({int(c) for t in targets for c, d in zip(t["labels"], _difficult(t), strict=True) if not d})
    if not classes:
        return None
    aps = []
    for c in classes:
        detections = [(p["boxes"][p["labels"] == c], p["scores"][p["labels"] == c]) for p in predictions]
        truths = [(t["boxes"][t["labels"] == c], _difficult(t)[t["labels"] == c]) for t in targets]
        aps.append(voc_average_precision(detections, truths, use_07_metric))
    return float(np.mean(aps))


def _difficult(target: dict[str, np.ndarray]) -> np.ndarray:
    return target.get("iscrowd", np.zeros(len(target["labels"]), dtype=np.int64)).astype(bool)


def voc_average_precision(
    detections: list[tuple[np.ndarray, np.ndarray]],
    truths: list[tuple[np.ndarray, np.ndarray]],
    use_07_metric: bool,
    min_overlap: float = 0.5,
) -> float:
    """One class's AP as the PASCAL VOC devkit computes it (VOCevaldet.m and VOCap.m).

    `detections[i]`: (boxes, scores) in image i; `truths[i]`: (boxes, difficult) in image i. Boxes
    are this project's 0-based xyxy, where pixel columns x1 .. x2 - 1 are covered; the devkit's
    1-based inclusive corners are (x1 + 1, y1 + 1, x2, y2), and its overlap counts pixels with its
    +1 convention, (x2 - x1 + 1) * (y2 - y1 + 1) on those corners. All detections, over all images,
    in order of decreasing score (ties: image order): each goes to the ground-truth box it overlaps
    most (the first of equals; difficult and already matched boxes included). With overlap >=
    `min_overlap`: a difficult box makes it neither true nor false positive; a box not matched yet
    makes it a true positive (and matched); a matched one, a false positive (a duplicate). Below
    the overlap: a false positive. Recall is over the non-difficult boxes. AP: VOC2007's 11-point
    interpolation (`use_07_metric`: mean over recall 0, 0.1, .., 1 of the highest precision at
    that recall or more), or from VOC2010 on, the area under the monotone precision envelope.
    """
    positives = sum(int((~np.asarray(d, dtype=bool)).sum()) for _, d in truths)
    entries = [
        (float(s), i, b) for i, (boxes, scores) in enumerate(detections) for b, s in zip(boxes, scores, strict=True)
    ]
    order = sorted(range(len(entries)), key=lambda k: -entries[k][0])  # stable: ties keep image order
    matched = [np.zeros(len(b), dtype=bool) for b, _ in truths]
    tp = np.zeros(len(entries))
    fp = np.zeros(len(entries))
    for rank, k in enumerate(order):
        _, image, box = entries[k]
        gt_boxes, difficult = truths[image]
        gt = _devkit_corners(np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4))
        bb = _devkit_corners(np.asarray(box, dtype=np.float64).reshape(1, 4))[0]
        iw = np.minimum(bb[2], gt[:, 2]) - np.maximum(bb[0], gt[:, 0]) + 1
        ih = np.minimum(bb[3], gt[:, 3]) - np.maximum(bb[1], gt[:, 1]) + 1
        overlaps = np.full(len(gt), -np.inf)
        inside = (iw > 0) & (ih > 0)
        union = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
        overlaps[inside] = (iw * ih)[inside] / (union - iw * ih)[inside]
        best = int(np.argmax(overlaps)) if len(gt) else -1
        if best >= 0 and overlaps[best] >= min_overlap:
            if bool(difficult[best]):
                continue
            if not matched[image][best]:
                tp[rank], matched[image][best] = 1, True
            else:
                fp[rank] = 1
        else:
            fp[rank] = 1
    if not positives:
        return math.nan  # no ground truth: AP is not defined
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / positives
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)  # NaN while only ignored detections came: skipped, as Matlab's max skips NaN
    if use_07_metric:
        ap = 0.0
        for t in np.linspace(0, 1, 11):
            reached = precision[(recall >= t) & ~np.isnan(precision)]
            ap += (float(reached.max()) if len(reached) else 0.0) / 11
        return ap
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = np.fmax(mpre[i], mpre[i + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def _devkit_corners(boxes: np.ndarray) -> np.ndarray:
    """0-based xyxy (x2, y2 exclusive) as the devkit's 1-based inclusive corners."""
    return boxes + np.array([1.0, 1.0, 0.0, 0.0])


@hookimpl
def bench_tasks() -> list[type[Task]]:
    return [Detection]

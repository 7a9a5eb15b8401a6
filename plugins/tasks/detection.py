"""Object detection: torchvision's Faster R-CNN with an FPN over the backbone's last stages.

The pieces are torchvision's own (FeaturePyramidNetwork, AnchorGenerator, RegionProposalNetwork
and RoIHeads as FasterRCNN assembles them); only the wiring is ours, so that the backbone stays
the shared `BackboneModule` and everything else is the task's new `head`. BatchNorm in the
backbone is ordinary BatchNorm (torchvision's `resnet_fpn_backbone` would freeze it, which is
wrong when training from scratch); the strategy decides. COCO mAP comes from torchmetrics with
the faster-coco-eval backend.

The RPN/RoI sample counts are options: torchvision's defaults (2000 proposals, 512 sampled
RoIs per image) are right for COCO-sized images, but make small-image CPU runs several times
slower than e.g. 256 proposals and 64 sampled RoIs.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
import torch
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
    #: anchor size per FPN level (fpn_stages + 1 values); default 8 x the level's stride
    anchor_sizes: list[int] | None = None
    aspect_ratios: list[float] = [0.5, 1.0, 2.0]
    #: images are resized so the short side is min_size (long side at most max_size)
    min_size: Annotated[int, Field(ge=16)] = 800
    max_size: Annotated[int, Field(ge=16)] = 1333
    proposals_train: Annotated[int, Field(ge=1)] = 2000
    proposals_test: Annotated[int, Field(ge=1)] = 1000
    rpn_sampled: Annotated[int, Field(ge=1)] = 256
    roi_sampled: Annotated[int, Field(ge=1)] = 512
    detections_per_image: Annotated[int, Field(ge=1)] = 100

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

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        """Training: the dict of losses. Evaluation: one dict of boxes, scores, labels per image."""
        original_sizes = [tuple(img.shape[-2:]) for img in images]
        batch, targets = self.transform(images, targets)
        stages = self.backbone(batch.tensors)[-len(self.levels) :]
        features = self.head["fpn"](OrderedDict(zip(self.levels, stages, strict=True)))
        proposals, rpn_losses = self.head["rpn"](batch, features, targets)
        detections, roi_losses = self.head["roi_heads"](features, proposals, batch.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)


Targets = list[dict[str, torch.Tensor]]

# COCOeval's own float64 thresholds. torchmetrics' defaults come from a float32 linspace (0.3 is
# 0.30000001 there), which moves a recall of exactly 3/10 across a threshold and the mAP off
# the reference's.
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10).tolist()
COCO_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101).tolist()


class Detection(Task):
    """Object detection: Faster R-CNN with an FPN over the last stages; COCO mAP, mAP@50, mAP@75."""

    name = "detection"
    metrics = ("map", "map_50", "map_75")
    Options = DetectionOptions
    options: DetectionOptions
    dense = True

    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel:
        return DetectionModel(backbone, num_classes, self.options)

    def collate(self, samples: list[Any]) -> tuple[list[torch.Tensor], Targets]:
        """Labels move from 0..C-1 to 1..C: Faster R-CNN keeps 0 for the background.

        `iscrowd` (COCO's crowd regions, VOC's difficult objects) defaults to 0 for every box.
        """
        images = [image for image, _ in samples]
        targets = [
            {
                "boxes": t["boxes"],
                "labels": t["labels"] + 1,
                "iscrowd": t.get("iscrowd", torch.zeros(len(t["labels"]), dtype=torch.int64)),
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
        """Crowd / difficult boxes are not trained on (they only excuse detections in evaluation)."""
        images, targets = batch
        kept = [t["iscrowd"] == 0 for t in targets]
        targets = [{"boxes": t["boxes"][k], "labels": t["labels"][k]} for t, k in zip(targets, kept, strict=True)]
        losses = model(images, targets)
        return torch.stack(list(losses.values())).sum()

    def evaluate(self, model: TaskModel, batches: Iterator[Any], num_classes: int) -> dict[str, float]:
        meter = MeanAveragePrecision(
            iou_type="bbox",
            backend="faster_coco_eval",
            iou_thresholds=COCO_IOU_THRESHOLDS,
            rec_thresholds=COCO_RECALL_THRESHOLDS,
        )
        for images, targets in batches:
            predictions = model(images)
            meter.update(
                [{k: v.float().cpu() if k != "labels" else v.cpu() for k, v in p.items()} for p in predictions],
                [{k: v.cpu() for k, v in t.items()} for t in targets],
            )
        found = meter.compute()
        return {"map": float(found["map"]), "map_50": float(found["map_50"]), "map_75": float(found["map_75"])}


@hookimpl
def bench_tasks() -> list[type[Task]]:
    return [Detection]

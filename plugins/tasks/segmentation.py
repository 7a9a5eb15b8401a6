"""Semantic segmentation: torchvision's DeepLabV3 head (ASPP) on the backbone's last stage.

The backbone is built with dilation so its last stage has the requested output stride
(16 by default, as DeepLabV3 trains). mIoU and pixel accuracy come from torchmetrics with
the void label 255 ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from bench_plugins.tasks.common import Normalizer, StackedBatchesTask
from pydantic import Field
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchvision.models.segmentation.deeplabv3 import ASPP

from harness import OMITTED_AT_DEFAULT, Backbone, BackboneModule, Options, Task, TaskModel, hookimpl

VOID = 255


def deeplab_head(
    in_channels: int, num_classes: int, channels: int = 256, rates: tuple[int, ...] = (12, 24, 36)
) -> nn.Module:
    """torchvision's `DeepLabHead` (ASPP, a 3x3 convolution, the classifier), with its width and atrous
    rates as arguments: the defaults build exactly `DeepLabHead(in_channels, num_classes)`."""
    return nn.Sequential(
        ASPP(in_channels, list(rates), channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, num_classes, 1),
    )


class SegmentationModel(TaskModel):
    def __init__(self, backbone: BackboneModule, head: nn.Module) -> None:
        super().__init__()
        self.normalize = Normalizer(backbone)
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone(self.normalize(images))[-1])
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


class SegmentationOptions(Options):
    output_stride: Literal[8, 16, 32] = 16
    #: the ASPP's and the head's width; 256 is DeepLabV3's (and torchvision's)
    head_channels: Annotated[int, Field(ge=1, le=4096, json_schema_extra=OMITTED_AT_DEFAULT)] = 256
    #: the ASPP's three atrous rates, in feature-map pixels; (12, 24, 36) is DeepLabV3's at output stride 8
    #: (torchvision's default); on small maps (a 64 px image at stride 16 is 4x4) smaller rates see more of it
    atrous_rates: Annotated[
        list[Annotated[int, Field(ge=1, le=1024)]],
        Field(min_length=3, max_length=3, json_schema_extra=OMITTED_AT_DEFAULT),
    ] = [
        12,
        24,
        36,
    ]


class Segmentation(StackedBatchesTask):
    """Semantic segmentation: a DeepLabV3 head on the last stage; mIoU and pixel accuracy, void ignored."""

    name = "segmentation"
    metrics = ("miou", "pixel_acc")
    Options = SegmentationOptions
    options: SegmentationOptions

    dense = True
    trivial_predictor = "most frequent class at every pixel"
    distilled = "per-pixel logits"

    def synthetic_samples(self, size: int, num_classes: int, count: int) -> list[Any]:
        """Random images with a random mask of class indices each."""
        return [(torch.rand(3, size, size), torch.randint(0, num_classes, (size, size))) for _ in range(count)]

    def check(self, backbone: Backbone) -> str | None:
        if reason := super().check(backbone):
            return reason
        if self.options.output_stride not in backbone.output_strides:
            return (
                f"{backbone.name} cannot be built with output stride {self.options.output_stride} "
                f"(supports {', '.join(map(str, backbone.output_strides))})"
            )
        return None

    def output_stride(self) -> int:
        return self.options.output_stride

    def min_train_batch(self) -> int:
        return 2  # ASPP's image-pooling branch has BatchNorm over a 1x1 map: one sample cannot train it

    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel:
        options = self.options
        head = deeplab_head(backbone.channels[-1], num_classes, options.head_channels, tuple(options.atrous_rates))
        return SegmentationModel(backbone, head)

    def loss(self, model: TaskModel, batch: Any) -> torch.Tensor:
        return self.loss_and_outputs(model, batch)[0]

    def loss_and_outputs(self, model: TaskModel, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel cross-entropy (void pixels ignored) and the logits at image size."""
        images, masks = batch
        logits = model(images)
        return F.cross_entropy(logits, masks, ignore_index=VOID), logits

    def feature_cache_problem(self) -> str | None:
        return "DeepLabV3 upsamples the head's logits to the input image's size, which cached features do not carry"

    def trivial(self, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        """Every pixel the test masks' most frequent class (void ignored): the all-background predictor
        where background dominates."""
        return self.stacked_trivial(batches, num_classes, dense=True, ignore=VOID)

    def evaluate(self, model: TaskModel, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        miou = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=VOID)
        accuracy = MulticlassAccuracy(num_classes, average="micro", ignore_index=VOID)
        for images, masks in batches:
            predicted = model(images).argmax(dim=1).cpu()
            miou.update(predicted, masks.cpu())
            accuracy.update(predicted, masks.cpu())
        return {"miou": float(miou.compute()), "pixel_acc": float(accuracy.compute())}


@hookimpl
def bench_tasks() -> list[type[Task]]:
    return [Segmentation]

"""Image classification: a new linear head on the globally pooled last stage; top-1 / top-5 accuracy,
macro F1, balanced accuracy, macro one-vs-rest AUROC and the expected calibration error, all from torchmetrics."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from bench_plugins.tasks.common import Normalizer, StackedBatchesTask
from pydantic import Field
from torch import nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassCalibrationError,
    MulticlassF1Score,
    MulticlassRecall,
)

from harness import BackboneModule, HeadOnly, Options, Task, TaskModel, hookimpl


class ClassificationModel(TaskModel):
    def __init__(self, backbone: BackboneModule, num_classes: int) -> None:
        super().__init__()
        self.normalize = Normalizer(backbone)
        self.backbone = backbone
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(backbone.channels[-1], num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(images))[-1])


class ClassificationOptions(Options):
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


class Classification(StackedBatchesTask):
    """Image classification: a linear head on the pooled last stage; top-1 and top-5 accuracy, macro F1,
    balanced accuracy, macro AUROC and the expected calibration error (lower is better)."""

    name = "classification"
    metrics = ("top1", "top5", "f1_macro", "balanced_accuracy", "auroc_macro", "ece")
    lower_is_better = ("ece",)
    Options = ClassificationOptions
    options: ClassificationOptions

    trivial_predictor = "majority class"
    distilled = "logits"

    def synthetic_samples(self, size: int, num_classes: int, count: int) -> list[Any]:
        """Random images with a class index each."""
        return [(torch.rand(3, size, size), int(torch.randint(0, num_classes, ()))) for _ in range(count)]

    def reported_metrics(self, num_classes: int | None = None) -> tuple[str, ...]:
        """top-5 accuracy needs more than five classes: with five or fewer it is 1 for any model."""
        return self.metrics if num_classes is None or num_classes > 5 else tuple(m for m in self.metrics if m != "top5")

    def trivial(self, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        """The majority class of the test labels for every image, with probability 1 (scikit-learn's
        `DummyClassifier(strategy="most_frequent")`); top-k: the k most frequent classes."""
        return self.stacked_trivial(batches, num_classes, dense=False, certain=True)

    def build_model(self, backbone: BackboneModule, num_classes: int) -> TaskModel:
        return ClassificationModel(backbone, num_classes)

    def loss(self, model: TaskModel, batch: Any) -> torch.Tensor:
        return self.loss_and_outputs(model, batch)[0]

    def loss_and_outputs(self, model: TaskModel, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and the logits."""
        images, labels = batch
        logits = model(images)
        return F.cross_entropy(logits, labels, label_smoothing=self.options.label_smoothing), logits

    def feature_cache_problem(self) -> str | None:
        return None

    def head_samples(self, model: TaskModel, batch: Any) -> list[Any]:
        """The last stage's feature map of each image (the head pools it), with its label."""
        images, labels = batch
        features = model.backbone(model.normalize(images))[-1]  # type: ignore[operator]
        return list(zip(features.unbind(0), labels.unbind(0), strict=True))

    def head_model(self, model: TaskModel) -> TaskModel:
        return HeadOnly(model, model.head)

    def evaluate(self, model: TaskModel, batches: Iterator[Any], num_classes: int) -> dict[str, float | None]:
        return self.evaluate_per_image(model, batches, num_classes)[0]

    def evaluate_per_image(
        self, model: TaskModel, batches: Iterator[Any], num_classes: int
    ) -> tuple[dict[str, float | None], dict[str, list[float]]]:
        """The metrics from torchmetrics, and per image 1 where its label is among the top k (the other
        metrics are no mean over images: the report's interval for them is over seeds).

        Top-k accuracy, macro F1 and per-class recall read the logits; AUROC (one-vs-rest) and ECE (15
        equal-width bins of the top-1 confidence, L1) their softmax. Macro averages, as scikit-learn's:
        F1 over the classes in the labels or the predictions, balanced accuracy (mean per-class recall)
        and AUROC over the classes in the labels. None where the labels leave a metric undefined."""
        ks = [int(name.removeprefix("top")) for name in self.reported_metrics(num_classes) if name.startswith("top")]
        meters = {k: MulticlassAccuracy(num_classes, top_k=k, average="micro") for k in ks}
        f1 = MulticlassF1Score(num_classes, average="macro")
        recall = MulticlassRecall(num_classes, average="none")
        auroc = MulticlassAUROC(num_classes, average="none")
        ece = MulticlassCalibrationError(num_classes, n_bins=15, norm="l1")
        support = torch.zeros(num_classes, dtype=torch.int64)
        hits: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
        for images, labels in batches:
            logits, labels = model(images).float().cpu(), labels.cpu()
            for k, meter in meters.items():
                meter.update(logits, labels)
                hits[k].append((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1))
            probabilities = logits.softmax(dim=1)
            f1.update(logits, labels)
            recall.update(logits, labels)
            auroc.update(probabilities, labels)
            ece.update(probabilities, labels)
            support += torch.bincount(labels, minlength=num_classes)
        metrics: dict[str, float | None] = {f"top{k}": float(meter.compute()) for k, meter in meters.items()}
        present = support > 0
        if present.any():
            # a class's AUROC needs positives and negatives: one class alone in the labels leaves it undefined
            ranked = present & (support < support.sum())
            with warnings.catch_warnings():  # torchmetrics warns of the classes absent from the labels
                warnings.simplefilter("ignore", UserWarning)
                metrics |= {
                    "f1_macro": float(f1.compute()),
                    "balanced_accuracy": float(recall.compute()[present].mean()),
                    "auroc_macro": float(auroc.compute()[ranked].mean()) if ranked.any() else None,
                    "ece": float(ece.compute()),
                }
        else:
            metrics |= dict.fromkeys(("f1_macro", "balanced_accuracy", "auroc_macro", "ece"), None)
        per_image = {f"top{k}": torch.cat(h).float().tolist() if h else [] for k, h in hits.items()}
        return metrics, per_image


@hookimpl
def bench_tasks() -> list[type[Task]]:
    return [Classification]

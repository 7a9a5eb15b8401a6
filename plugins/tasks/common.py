"""Pieces the task plugins share: input normalisation, batches of stacked tensors, trivial predictors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from bench_plugins.tasks.distillation import pixel_kl, soft_label_kl
from torch import nn

from harness import BackboneModule, Task, TaskModel


class Normalizer(nn.Module):
    """The backbone's input normalisation, kept inside the model so datasets hand over [0, 1] images."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: BackboneModule) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


class ConstantScores(nn.Module):
    """A trivial predictor: the same class scores for every image (or every pixel), whatever it shows.

    `images` need only carry the batch size (and, for dense outputs, the spatial size).
    """

    def __init__(self, scores: torch.Tensor, dense: bool = False) -> None:
        super().__init__()
        self.scores, self.dense = scores.float(), dense

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.dense:
            batch, _, height, width = images.shape
            return self.scores.view(1, -1, 1, 1).expand(batch, -1, height, width)
        return self.scores.view(1, -1).expand(len(images), -1)


def class_counts(targets: list[torch.Tensor], num_classes: int, ignore: int | None = None) -> torch.Tensor:
    """How often each class occurs in `targets` (labels or masks), `ignore` (void) left out."""
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for target in targets:
        values = target.flatten().to(torch.int64)
        if ignore is not None:
            values = values[values != ignore]
        counts += torch.bincount(values, minlength=num_classes)[:num_classes]
    return counts


class StackedBatchesTask(Task):
    """A task whose batches are two stacked tensors, images and targets (class indices or masks).

    Its model reads one 4-D batch of images and outputs class logits (per image or per pixel), so
    it trains in bfloat16 and channels_last on GPUs by default, and distils softened logits."""

    preferred_amp = "bf16"
    channels_last = True

    def distillation_loss(self, outputs: Any, teacher: TaskModel, batch: Any, temperature: float) -> torch.Tensor:
        """Hinton's softened-logits KL; per pixel, averaged over pixels, when the logits are a map."""
        with torch.no_grad():
            target = teacher(batch[0])
        per_pixel = outputs.ndim == 4
        return (pixel_kl if per_pixel else soft_label_kl)(outputs, target, temperature)

    def collate(self, samples: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = zip(*samples, strict=True)
        return torch.stack(images), torch.stack([torch.as_tensor(t, dtype=torch.int64) for t in targets])

    def to_device(self, batch: Any, device: torch.device) -> Any:
        images, targets = batch
        return images.to(device, non_blocking=True), targets.to(device, non_blocking=True)

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def stacked_trivial(
        self, batches: Iterator[Any], num_classes: int, dense: bool, ignore: int | None = None, certain: bool = False
    ) -> dict[str, float | None]:
        """`evaluate` of `ConstantScores` ranking the classes by their frequency in the targets of `batches`:
        top-1 is the most frequent class, top-k the k most frequent. Only the targets are kept, not the images.
        `certain`: the counts times 2**10 (exact in floating point: the order stays) and the first most frequent
        class 2**9 above any tied with it, so far apart that their softmax is 1 on that class and 0 elsewhere
        (a tied class in its place would score the same top-k)."""
        targets = [target.cpu() for _, target in batches]
        counts = class_counts(targets, num_classes, ignore)
        scores = counts
        if certain:
            scores = counts.float() * 2.0**10
            scores[counts.argmax()] += 2.0**9
        model = ConstantScores(scores, dense)
        blanks = ((torch.zeros(len(t), 1, *t.shape[1:]), t) for t in targets)  # shapes only
        with torch.inference_mode():
            return self.evaluate(model, blanks, num_classes)  # type: ignore[arg-type]
